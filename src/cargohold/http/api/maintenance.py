"""Maintenance of the whole registry: garbage collection (system administrators only)."""

from __future__ import annotations

from cargohold.http.api.models import GcReport, GcRequest
from cargohold.http.api.routing import Access, Call, Route, route_with_body


async def collect_garbage(call: Call, body: GcRequest) -> GcReport:
    report = await call.services.gc.run(dry_run=body.dry_run)
    return GcReport.model_validate(report.to_json())


ROUTES: tuple[Route, ...] = (
    route_with_body(
        "POST",
        "/gc",
        collect_garbage,
        body=GcRequest,
        summary="Collect garbage now: manifests, links and blobs nothing needs any more"
        " (system administrators); 409 while another collection runs",
        response=GcReport,
        access=Access.ADMIN,
        errors=(409,),
    ),
)
