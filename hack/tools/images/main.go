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

// Command images builds OCI images without a container daemon, the way ko
// does: it never runs anything inside an image, it writes layers and
// assembles them with go-containerregistry. hack/build-images.sh drives it.
//
//	images layer --out L.tar.gz (--from-tar ROOTFS.tar | --from-dir DIR | --file DEST=SRC[:MODE]...)
//	images build --layer L1.tar.gz --layer L2.tar.gz --name REPO --tag TAG \
//	    --entrypoint /usr/local/bin/x --user 65532:65532 --label k=v ... \
//	    --oci-layout DIR --docker-archive FILE.tar --sbom FILE.spdx.json --digest-file FILE
//
// Both are reproducible: the same inputs and the same --epoch (default
// $SOURCE_DATE_EPOCH) give byte-identical layers and the same image digest.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "layer":
		err = runLayer(os.Args[2:])
	case "build":
		err = runBuild(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "images %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: images layer|build [flags] (images <command> -h lists the flags)")
	os.Exit(2)
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// epochFlag registers --epoch, the time every timestamp is set to (file
// modification times are clamped to it), defaulting to SOURCE_DATE_EPOCH as
// https://reproducible-builds.org/specs/source-date-epoch/ defines it.
func epochFlag(fs *flag.FlagSet) *int64 {
	def := int64(0)
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			def = n
		}
	}
	return fs.Int64("epoch", def, "Unix time of every timestamp (default $SOURCE_DATE_EPOCH, else 0)")
}

func epochTime(epoch int64) time.Time { return time.Unix(epoch, 0).UTC() }
