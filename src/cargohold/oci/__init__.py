"""Pure OCI distribution protocol helpers: errors, digests, names, media types, manifests.

Nothing in this package performs I/O; it only validates and (de)serialises protocol values.
"""
