"""Import and export of grids and places: uploaded files read through GDAL (``readers``), the
field mapping, row report and all-or-nothing commit (``imports``), GeoJSON and Excel exports
(``exports``)."""
