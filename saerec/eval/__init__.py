"""Next-item evaluation: full ranking with seen items filtered, NDCG/HitRate/MRR/Coverage@K."""
