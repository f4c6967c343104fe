from django.urls import path

from portal.inventory import api, views

app_name = "inventory"

urlpatterns = [
    path("", views.node_list, name="list"),
    path("<str:identity>/", views.node_detail, name="detail"),
]

api_urlpatterns = [
    path("inventory/preview/", api.InventoryPreviewAPI.as_view(), name="inventory-preview"),
    path("inventory/facts/", api.FactNamesAPI.as_view(), name="inventory-facts"),
    path("inventory/values/", api.SeenValuesAPI.as_view(), name="inventory-values"),
    path("inventory/fact-choices/", api.FactChoicesAPI.as_view(), name="inventory-fact-choices"),
]
