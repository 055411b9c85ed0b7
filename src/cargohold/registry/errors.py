"""Errors of the management operations (projects, repositories), shared by CLI and API."""

from __future__ import annotations


class ManagementError(Exception):
    status = 400


class InvalidInput(ManagementError):
    status = 400


class NotFound(ManagementError):
    status = 404


class Conflict(ManagementError):
    status = 409
