"""kfloop: a Kubernetes-native MLOps loop on Kubeflow (validate → train → evaluate → push → serve → monitor)."""

__version__ = "0.1.0"
