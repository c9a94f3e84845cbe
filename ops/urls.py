"""Ops pages under /console/admin/ (namespace "ops")."""

from django.urls import path

from ops import views

app_name = "ops"
urlpatterns = [path("capacity/", views.capacity_page, name="capacity")]
