"""Everything that touches a firewall lives in this package (see base.FirewallAdapter)."""
