"""The domain: projects, repositories, the name router, blobs, uploads, manifests, tags."""
