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

package disks

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// Format is the declared format of a disk file. Vessel never asks QEMU or
// libvirt to guess one: a guessed format lets whoever writes the file's first
// bytes (a tenant's image, or a guest writing its own raw disk) choose how
// QEMU reads it, including which other host files it opens.
type Format string

const (
	// Raw is a plain disk image: QEMU reads its bytes as the disk.
	Raw Format = "raw"
	// QCOW2 is a qcow2 image without a backing file or external data file.
	QCOW2 Format = "qcow2"
)

// ParseFormat accepts the formats Vessel declares to QEMU.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case Raw, QCOW2:
		return Format(s), nil
	}
	return "", fmt.Errorf("disk format %q is not raw or qcow2", s)
}

// sniffSize is how much of a file's start detectFormat reads: QEMU's own
// probing reads 2 KiB, VDI keeps its signature at 0x40.
const sniffSize = 2048

// signature is an image format QEMU can open that a raw disk must not look
// like, recognised the way QEMU's block drivers probe for it.
type signature struct {
	name  string
	match func(head []byte) bool
}

func prefix(p string) func([]byte) bool {
	return func(head []byte) bool { return bytes.HasPrefix(head, []byte(p)) }
}

var signatures = []signature{
	{"qcow2", func(h []byte) bool { return isQCOWMagic(h) && qcowVersion(h) >= 2 }},
	{"qcow (version 1)", func(h []byte) bool { return isQCOWMagic(h) && qcowVersion(h) < 2 }},
	{"qed", prefix("QED\x00")},
	{"vmdk", prefix("KDMV")},
	{"vmdk", prefix("COWD")},
	{"vmdk", isVMDKDescriptor},
	{"vdi", func(h []byte) bool { return len(h) >= 0x44 && binary.LittleEndian.Uint32(h[0x40:]) == 0xbeda107f }},
	{"vhdx", prefix("vhdxfile")},
	{"vpc (vhd)", prefix("conectix")},
	{"bochs", prefix("Bochs Virtual HD Image")},
	{"cloop", prefix("#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$1\n")},
	{"parallels", prefix("WithoutFreeSpace")},
	{"parallels", prefix("WithouFreSpacExt")},
	{"luks", prefix("LUKS\xba\xbe")},
}

func isQCOWMagic(h []byte) bool { return bytes.HasPrefix(h, []byte("QFI\xfb")) }

func qcowVersion(h []byte) uint32 {
	if len(h) < 8 {
		return 0
	}
	return binary.BigEndian.Uint32(h[4:8])
}

// isVMDKDescriptor mirrors QEMU's vmdk_probe for text descriptors: comment
// and blank lines, then "version=1|2|3". A descriptor names extent files,
// any file on the host.
func isVMDKDescriptor(h []byte) bool {
	if bytes.HasPrefix(h, []byte("# Disk DescriptorFile")) {
		return true
	}
	for len(h) > 0 {
		line, rest, _ := bytes.Cut(h, []byte("\n"))
		trimmed := bytes.TrimRight(bytes.TrimLeft(line, " "), "\r")
		switch {
		case bytes.HasPrefix(line, []byte("#")):
		case len(trimmed) == 0:
		default:
			return bytes.HasPrefix(line, []byte("version=")) && len(line) >= len("version=X") &&
				bytes.IndexByte([]byte("123"), line[len("version=")]) >= 0 &&
				len(bytes.TrimRight(line[len("version=X"):], "\r")) == 0
		}
		h = rest
	}
	return false
}

// detectFormat names the image format whose signature starts the file, or
// "" for data no QEMU driver would claim. It is only ever used to refuse a
// file, never to choose how to open one.
func detectFormat(r io.ReaderAt) (string, error) {
	head := make([]byte, sniffSize)
	n, err := r.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return "", err
	}
	head = head[:n]
	for _, s := range signatures {
		if s.match(head) {
			return s.name, nil
		}
	}
	return "", nil
}
