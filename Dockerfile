FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libopus0 libvpx7 libsrtp2-1 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/confsvc
COPY pyproject.toml README.md ./
COPY confsvc ./confsvc
COPY web ./web
RUN pip install --no-cache-dir -e .
EXPOSE 8080
CMD ["confsvc", "serve"]
