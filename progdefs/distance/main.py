"""distance: how far each point is from the one before it, in km along the Earth's surface."""

import math

from executor import Job
from executor.types import Float64

EARTH_RADIUS_KM = 6371.0088


def great_circle_km(a, b) -> float:  # type: ignore[no-untyped-def]
    """The haversine distance between two acme.geo.Point messages."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat, dlon = lat2 - lat1, math.radians(b.lon - a.lon)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def run(job: Job) -> None:
    """Send one distance per point, in the order the points arrive."""
    previous = None
    for point in job.inputs["points"]:
        km = 0.0 if previous is None else great_circle_km(previous, point)
        job.outputs["km"].send(Float64(value=round(km, 3)))
        previous = point
