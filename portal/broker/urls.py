from django.urls import path

from portal.broker import views

app_name = "broker"

urlpatterns = [path("", views.broker_status, name="status")]
