# migfix in a container: built from source on Debian 12 (bookworm) with the
# project's own install script, run as a non-root user.
#
#   docker build -t migfix .
#   docker run --rm -v "$PWD:/work" -e DATABASE_URL migfix check
#
# The build stage installs what building needs (scripts/install-deps --build),
# builds and installs into /out/usr/local (make install DESTDIR=/out); the final
# stage installs only what running needs (scripts/install-deps --runtime: the
# shared libraries, pg_dump 15, luaposix and libpg_query 17 from trixie pinned as
# on a workstation)
# and copies the installed tree. docs/container.md says more.

FROM debian:bookworm-slim AS build
WORKDIR /src
COPY scripts/install-deps scripts/install-deps
RUN scripts/install-deps --build
COPY . .
RUN make migfix gen && make install PREFIX=/usr/local DESTDIR=/out

FROM debian:bookworm-slim
COPY scripts/install-deps /usr/local/sbin/migfix-install-deps
RUN /usr/local/sbin/migfix-install-deps --runtime && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/usr/local/ /usr/local/
RUN useradd --create-home --uid 10001 --user-group migfix && /usr/local/bin/migfix --version
USER migfix
WORKDIR /work
ENTRYPOINT ["/usr/local/bin/migfix"]
CMD ["--help"]
