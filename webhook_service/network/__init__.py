"""Outbound HTTP to hosts a caller chose (media downloads, webhook deliveries): which addresses may be
reached, how URLs are read, and connections pinned to the address that was checked."""
