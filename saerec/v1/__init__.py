"""Generated gRPC stubs of proto/saerec/v1/recommender.proto (python -m saerec.serving.protogen)."""
