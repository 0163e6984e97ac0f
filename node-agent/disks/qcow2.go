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
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// The qcow2 header, as docs/interop/qcow2.txt in QEMU describes it. It is
// read here, in Go, before any QEMU tool opens the file: the references a
// crafted header makes (a backing file, an external data file) are refused
// before anything could follow them.
const (
	qcow2HeaderV2Length = 72
	qcow2HeaderV3Length = 104
	// QEMU accepts clusters of 512 B to 2 MiB; header extensions live in
	// the first cluster.
	qcow2MinClusterBits = 9
	qcow2MaxClusterBits = 21

	qcow2IncompatDirty         = 1 << 0
	qcow2IncompatCorrupt       = 1 << 1
	qcow2IncompatDataFile      = 1 << 2
	qcow2IncompatCompression   = 1 << 3
	qcow2IncompatExtendedL2    = 1 << 4
	qcow2IncompatKnown         = qcow2IncompatDirty | qcow2IncompatCorrupt | qcow2IncompatDataFile | qcow2IncompatCompression | qcow2IncompatExtendedL2
	qcow2ExtEnd                = 0x00000000
	qcow2ExtBackingFormat      = 0xe2792aca
	qcow2ExtFullDiskEncryption = 0x0537be77
	qcow2ExtDataFile           = 0x44415441
)

// qcow2Header is what Vessel needs to know of a qcow2 header.
type qcow2Header struct {
	version     uint32
	virtualSize uint64
	// backingFile and backingFormat are set when the image names one.
	backingFile   string
	backingFormat string
	hasBacking    bool
	dataFile      bool
	encrypted     bool
	corrupt       bool
}

// readQCOW2Header parses the header and its extensions. It returns an
// ErrFormatMismatch error when r is not qcow2 at all and ErrInvalidImage for
// a malformed header.
func readQCOW2Header(r io.ReaderAt) (qcow2Header, error) {
	var h qcow2Header
	buf := make([]byte, qcow2HeaderV3Length)
	n, err := r.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return h, fmt.Errorf("read qcow2 header: %w", err)
	}
	buf = buf[:n]
	if !isQCOWMagic(buf) {
		return h, fmt.Errorf("%w: no qcow2 signature", ErrFormatMismatch)
	}
	if len(buf) < qcow2HeaderV2Length {
		return h, fmt.Errorf("%w: truncated qcow2 header", ErrInvalidImage)
	}
	be := binary.BigEndian
	h.version = be.Uint32(buf[4:])
	if h.version != 2 && h.version != 3 {
		return h, fmt.Errorf("%w: qcow2 version %d is not 2 or 3", ErrInvalidImage, h.version)
	}
	backingOffset, backingSize := be.Uint64(buf[8:]), be.Uint32(buf[16:])
	clusterBits := be.Uint32(buf[20:])
	h.virtualSize = be.Uint64(buf[24:])
	h.encrypted = be.Uint32(buf[32:]) != 0
	if clusterBits < qcow2MinClusterBits || clusterBits > qcow2MaxClusterBits {
		return h, fmt.Errorf("%w: qcow2 cluster size 2^%d is out of range", ErrInvalidImage, clusterBits)
	}
	clusterSize := uint64(1) << clusterBits
	if backingOffset != 0 || backingSize != 0 {
		h.hasBacking = true
		if backingSize > 1023 || backingOffset > clusterSize || backingOffset+uint64(backingSize) > clusterSize {
			return h, fmt.Errorf("%w: qcow2 backing file name out of the header cluster", ErrInvalidImage)
		}
		name := make([]byte, backingSize)
		if _, err := r.ReadAt(name, int64(backingOffset)); err != nil {
			return h, fmt.Errorf("%w: read the qcow2 backing file name: %v", ErrInvalidImage, err)
		}
		h.backingFile = string(name)
	}

	extStart := uint64(qcow2HeaderV2Length)
	if h.version == 3 {
		if len(buf) < qcow2HeaderV3Length {
			return h, fmt.Errorf("%w: truncated qcow2 version 3 header", ErrInvalidImage)
		}
		incompat := be.Uint64(buf[72:])
		if incompat&^qcow2IncompatKnown != 0 {
			return h, fmt.Errorf("%w: qcow2 incompatible features %#x are unknown", ErrInvalidImage, incompat&^qcow2IncompatKnown)
		}
		h.dataFile = incompat&qcow2IncompatDataFile != 0
		h.corrupt = incompat&qcow2IncompatCorrupt != 0
		extStart = uint64(be.Uint32(buf[100:]))
		if extStart < qcow2HeaderV3Length || extStart > clusterSize {
			return h, fmt.Errorf("%w: qcow2 header length %d", ErrInvalidImage, extStart)
		}
	}
	if err := h.readExtensions(r, extStart, clusterSize); err != nil {
		return h, err
	}
	return h, nil
}

// readExtensions walks the header extensions in the first cluster.
func (h *qcow2Header) readExtensions(r io.ReaderAt, off, end uint64) error {
	be := binary.BigEndian
	var ext [8]byte
	for off+8 <= end {
		if _, err := r.ReadAt(ext[:], int64(off)); err != nil {
			return fmt.Errorf("%w: read qcow2 header extension: %v", ErrInvalidImage, err)
		}
		typ, length := be.Uint32(ext[:]), uint64(be.Uint32(ext[4:]))
		off += 8
		if typ == qcow2ExtEnd {
			return nil
		}
		if off+length > end {
			return fmt.Errorf("%w: qcow2 header extension %#x overruns the header cluster", ErrInvalidImage, typ)
		}
		switch typ {
		case qcow2ExtDataFile:
			h.dataFile = true
		case qcow2ExtFullDiskEncryption:
			h.encrypted = true
		case qcow2ExtBackingFormat:
			if length > 256 {
				return fmt.Errorf("%w: qcow2 backing format name too long", ErrInvalidImage)
			}
			name := make([]byte, length)
			if _, err := r.ReadAt(name, int64(off)); err != nil {
				return fmt.Errorf("%w: read qcow2 backing format: %v", ErrInvalidImage, err)
			}
			h.backingFormat = string(name)
		}
		off += (length + 7) &^ 7
	}
	// QEMU stops at the end of the cluster as well.
	return nil
}

// VirtualSize is the size the guest sees of the disk file at path: a
// qcow2 image's virtual size, or the length of a raw file.
func VirtualSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("open disk: %w", err)
	}
	defer f.Close()
	h, err := readQCOW2Header(f)
	if errors.Is(err, ErrFormatMismatch) {
		st, err := f.Stat()
		if err != nil {
			return 0, fmt.Errorf("stat disk: %w", err)
		}
		return st.Size(), nil
	}
	if err != nil {
		return 0, err
	}
	return int64(h.virtualSize), nil
}
