"""A real Kubernetes control plane on this machine (etcd, kube-apiserver, controller manager and
scheduler from the binaries `hack/kube/build.sh` builds) and process kubelets, nodes whose Pods run
as local processes: what `modelferry dev --kube real` runs on, and the control-plane test tier
(tests/controlplane) too. See hack/kube/README.md."""
