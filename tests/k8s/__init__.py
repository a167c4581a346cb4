"""Tests against the real loopback Kubernetes control plane (tools/k8s,
llmchat_tools.devcluster)."""
