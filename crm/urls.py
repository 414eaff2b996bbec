from django.urls import path

from crm import views, views_field, views_handover, views_merchant, views_notifications, views_reports

urlpatterns = [
    path("", views.home, name="home"),
    path("merchants/", views_merchant.merchant_list, name="merchant-list"),
    path("merchants/<int:pk>/", views_merchant.merchant_detail, name="merchant-detail"),
    path("notifications/", views_notifications.notifications_page, name="notifications"),
    path("notifications/read-all/", views_notifications.notifications_read_all, name="notifications-read-all"),
    path("notifications/<int:pk>/read/", views_notifications.notification_read, name="notification-read"),
    path("reports/funnel/", views_reports.funnel_report, name="funnel-report"),
    path("handover/", views_handover.handover_page, name="handover"),
    path("handover/<int:pk>/", views_handover.handover_result, name="handover-result"),
    # The account manager's offline field app (issue 5): shell, manifest, service worker (scope /field/).
    path("field/", views_field.field_shell, name="field-shell"),
    path("field/manifest.webmanifest", views_field.field_manifest, name="field-manifest"),
    path("field/sw.js", views_field.field_service_worker, name="field-sw"),
]
