"""``python -m agents`` runs the node daemon (same as ``switchboard-node``)."""

from agents.daemon import main

raise SystemExit(main())
