"""Lead lists, campaigns, PDCA cycles and reminders arrive with their issues; nothing yet."""
