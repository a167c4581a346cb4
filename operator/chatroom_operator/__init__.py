"""The ChatRoom operator: ``ChatRoom`` resources reconciled into model-worker Deployments, a
judge Deployment, a ConfigMap and Leases; active/standby on a Lease (``llmchat operator``)."""
