# Versions of every client and server in the interoperability matrix (sourced by
# setup.sh and run.sh). Each one exists on the registry it comes from; change them here only.

# Spark 3.5 server: PyPI pyspark (bundles the Spark 3.5 jars, Scala 2.12) plus the Spark
# Connect server jar of the same version from Maven Central (not part of the pyspark 3.5
# package). 3.5.7 is the newest 3.5 release that has both.
SPARK35_VERSION=3.5.7
# Spark 4.x server: .venv/server from deploy/install-deps.sh (PyPI pyspark 4.2.1).

# Clients.
PYSPARK4_CLIENT_VERSION=4.2.0          # PyPI pyspark-client (as in deploy/install-deps.sh)
PYSPARK35_CLIENT_VERSION=3.5.7         # PyPI pyspark[connect]
JVM_CLIENT_VERSION=4.2.0               # Maven org.apache.spark:spark-connect-client-jvm_2.13
# The Go client: github.com/apache/spark-connect-go. The Go module proxy serves no tagged
# version of it (and nothing under /v34, /v35 or /v40); @latest is this pseudo-version
# (master of 2025-08-26). Pinned in tests/interop/go/go.mod.
GO_CLIENT_VERSION=v0.1.1-0.20250826122459-0e3d565b63e6
# Go toolchain fetched from the Go module proxy (golang.org/toolchain) when `go` on PATH
# is missing or older than the client's go.mod needs.
GO_TOOLCHAIN=go1.24.11
GO_MIN_MINOR=23
