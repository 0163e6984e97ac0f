// Builds Vessel's OCI images without a container daemon: reproducible
// layers from a root filesystem tarball, a directory or single files,
// assembled with go-containerregistry into an OCI image layout and a
// docker-archive tarball, with an SPDX SBOM. Its own module, so that
// go-containerregistry stays out of Vessel's go.mod.
module github.com/vessel-vm/vessel/hack/tools/images

go 1.26.0

require github.com/google/go-containerregistry v0.22.1

require (
	github.com/klauspost/compress v1.19.2 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/image-spec v1.1.1 // indirect
	golang.org/x/sync v0.22.0 // indirect
)
