"""gRPC for ``redispool serve --grpc-port`` (extra ``redispool[grpc]``).

Three services on one ``grpc.aio`` server over the same ``AsyncEngine`` as the HTTP API:
the native ``redispool.v1.Jobs`` (native.py, its Work stream in stream.py), the hosted
job service's ``spooled.v1`` services (spooled.py), health and reflection (server.py).
Nothing here is imported by ``redispool`` itself: without the extra, serve runs HTTP only.
"""
