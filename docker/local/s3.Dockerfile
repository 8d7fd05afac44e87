# An S3-protocol server (moto's standalone server) standing in for MinIO where MinIO's image
# cannot be pulled (docker/README.md, "Images from Debian packages"). Built on the sweeplab image.
ARG SWEEPLAB_IMAGE=sweeplab:0.1.0
FROM ${SWEEPLAB_IMAGE}
ARG PIP_CERT
USER root
RUN pip install --no-cache-dir "moto[server]==5.2.5"
USER sweeplab
EXPOSE 9000
CMD ["python3", "-m", "moto.server", "-H", "0.0.0.0", "-p", "9000"]
