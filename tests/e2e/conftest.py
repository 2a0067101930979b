from tests.e2e.fixtures import e2e_kube, model_source, one_node_cluster, real_product, three_node_cluster

__all__ = ["e2e_kube", "model_source", "one_node_cluster", "real_product", "three_node_cluster"]
