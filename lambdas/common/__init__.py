"""Code shared by the Lambda hooks: configuration readers and the typed configuration error
(``env``), the EKS token and Kubernetes client (``eks_client``). Every hook's package carries it."""
