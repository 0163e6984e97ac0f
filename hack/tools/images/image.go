/*
Copyright The Vessel Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// refNameAnnotation names an image inside an OCI layout; umoci, skopeo
// (oci:DIR:TAG) and containerd's importer look it up.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// imageSpec is everything an image is made of.
type imageSpec struct {
	layers     []string // compressed layers, bottom first
	history    []string // what made each layer (created_by)
	repository string   // ghcr.io/vessel-vm/vessel-apiserver
	tag        string
	platform   v1.Platform
	entrypoint []string
	cmd        []string
	user       string
	workdir    string
	env        []string
	labels     map[string]string
	created    time.Time
}

func runBuild(args []string) error {
	fs := flag.NewFlagSet("build", flag.ExitOnError)
	var layers, history, entrypoint, cmd, env, labels stringList
	fs.Var(&layers, "layer", "compressed layer from `images layer`, bottom first (repeatable)")
	fs.Var(&history, "history", "what made the layer of the same position (repeatable)")
	repository := fs.String("name", "", "repository, e.g. ghcr.io/vessel-vm/vessel-apiserver")
	tag := fs.String("tag", "", "tag, e.g. v0.1.0")
	platform := fs.String("platform", "linux/amd64", "OS/ARCH[/VARIANT]")
	fs.Var(&entrypoint, "entrypoint", "entrypoint argument (repeatable)")
	fs.Var(&cmd, "cmd", "default argument (repeatable)")
	user := fs.String("user", "", "user (UID:GID) the entrypoint runs as; empty is root")
	workdir := fs.String("workdir", "/", "working directory")
	fs.Var(&env, "env", "KEY=VALUE (repeatable)")
	fs.Var(&labels, "label", "KEY=VALUE (repeatable)")
	ociLayout := fs.String("oci-layout", "", "OCI image layout directory to write (replaced)")
	dockerArchive := fs.String("docker-archive", "", "docker-archive tarball to write (docker load, skopeo docker-archive:)")
	sbom := fs.String("sbom", "", "SPDX 2.3 JSON SBOM to write")
	digestFile := fs.String("digest-file", "", "file to write the manifest digest to")
	epoch := epochFlag(fs)
	_ = fs.Parse(args)
	if fs.NArg() > 0 || len(layers) == 0 || *repository == "" || *tag == "" || *ociLayout == "" {
		return errors.New("--layer, --name, --tag and --oci-layout are required and no arguments are taken")
	}
	p, err := v1.ParsePlatform(*platform)
	if err != nil {
		return err
	}
	spec := imageSpec{
		layers: layers, history: history, repository: *repository, tag: *tag, platform: *p,
		entrypoint: entrypoint, cmd: cmd, user: *user, workdir: *workdir, env: env,
		labels: map[string]string{}, created: epochTime(*epoch),
	}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return fmt.Errorf("--label %q: want KEY=VALUE", l)
		}
		spec.labels[k] = v
	}
	img, err := spec.image()
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	if err := writeLayout(*ociLayout, img, spec); err != nil {
		return fmt.Errorf("write OCI layout %s: %w", *ociLayout, err)
	}
	if *dockerArchive != "" {
		if err := writeDockerArchive(*dockerArchive, img, spec); err != nil {
			return fmt.Errorf("write docker-archive %s: %w", *dockerArchive, err)
		}
	}
	if *sbom != "" {
		if err := writeSBOM(*sbom, img, spec, digest); err != nil {
			return fmt.Errorf("write SBOM %s: %w", *sbom, err)
		}
	}
	if *digestFile != "" {
		if err := writeAtomically(*digestFile, []byte(digest.String()+"\n")); err != nil {
			return err
		}
	}
	fmt.Printf("%s:%s@%s\n", spec.repository, spec.tag, digest)
	return nil
}

// image assembles the layers and the configuration. The manifest and
// config are OCI media types; every time in them is the epoch.
func (s imageSpec) image() (v1.Image, error) {
	created := v1.Time{Time: s.created}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	var adds []mutate.Addendum
	for i, file := range s.layers {
		l, err := tarball.LayerFromFile(file, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, fmt.Errorf("read layer %s: %w", file, err)
		}
		h := v1.History{Created: created, CreatedBy: "images layer " + filepath.Base(file)}
		if i < len(s.history) {
			h.CreatedBy = s.history[i]
		}
		adds = append(adds, mutate.Addendum{Layer: l, History: h, MediaType: types.OCILayer})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Created = created
	cfg.OS, cfg.Architecture, cfg.Variant, cfg.OSVersion = s.platform.OS, s.platform.Architecture, s.platform.Variant, s.platform.OSVersion
	cfg.Config.Entrypoint = s.entrypoint
	cfg.Config.Cmd = s.cmd
	cfg.Config.User = s.user
	cfg.Config.WorkingDir = s.workdir
	cfg.Config.Env = s.env
	cfg.Config.Labels = s.labels
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, err
	}
	// The OCI labels are repeated as manifest annotations: registries show
	// those without fetching the config.
	anns := map[string]string{}
	for k, v := range s.labels {
		if strings.HasPrefix(k, "org.opencontainers.image.") {
			anns[k] = v
		}
	}
	if len(anns) > 0 {
		img = mutate.Annotations(img, anns).(v1.Image)
	}
	return img, nil
}

// writeLayout writes a fresh OCI image layout holding only this image,
// named by its tag, next to dir and then moves it into place: a layout
// from an earlier build would keep unreferenced blobs.
func writeLayout(dir string, img v1.Image, s imageSpec) error {
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img,
		layout.WithAnnotations(map[string]string{refNameAnnotation: s.tag}),
		layout.WithPlatform(s.platform),
	); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

func writeDockerArchive(file string, img v1.Image, s imageSpec) error {
	ref, err := name.NewTag(s.repository + ":" + s.tag)
	if err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

func writeAtomically(file string, data []byte) error {
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}
