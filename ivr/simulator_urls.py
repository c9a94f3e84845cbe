"""Phone simulator, mounted at `/simulator/` only when `CARELINE_DEMO` (careline/urls.py)."""

from django.urls import path

from ivr import simulator

app_name = "simulator"

urlpatterns = [
    path("", simulator.simulator_page, name="phone"),
    path("api/post/", simulator.simulator_post, name="post"),
]
