"""OpenLineage capture, the lineage graph and outbound transports."""
