# redispool: the CLI, the daemons and the example worker in one image.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY redispool ./redispool
COPY lua ./lua
COPY examples ./examples
RUN rm -f redispool/lua && cp -r lua redispool/lua && pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["redispool"]
CMD ["--help"]
