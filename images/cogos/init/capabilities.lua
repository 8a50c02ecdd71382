-- The capability types every cogent of this image can grant.
add_capability("files")
add_capability("channels")
add_capability("me")
