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

package hypervisor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// libvirt's QEMU save image (virsh save, managed save, and the memory file
// of an external snapshot) starts with virQEMUSaveHeader: a 16-byte magic,
// five uint32 (version, data_len, was_running, compressed, cookieOffset)
// and 14 unused uint32, in the host's byte order (little endian here).
// data_len bytes follow: the domain XML, NUL-terminated, then a
// NUL-terminated XML cookie at cookieOffset (the guest CPU definition), then
// zero padding that lets `virsh save-image-define` grow the XML in place.
// QEMU's migration stream starts right after.
const (
	saveMagic        = "LibvirtQemudSave"
	savePartialMagic = "LibvirtQemudPart"
	saveHeaderSize   = 92
	// saveXMLRoom is the padding left after the XML of a rewritten image,
	// as libvirt leaves some.
	saveXMLRoom = 1024
	// maxSaveData bounds data_len: an XML of megabytes is not a domain.
	maxSaveData = 16 << 20
)

// saveImage is the header and XML of a save image.
type saveImage struct {
	version    uint32
	wasRunning uint32
	compressed uint32
	unused     [56]byte
	// xml is the domain definition the image restores.
	xml string
	// cookie is the NUL-terminated cookie, empty when there is none.
	cookie []byte
	// streamOffset is where QEMU's migration stream starts.
	streamOffset int64
}

// errNotSaveImage says a file is not a complete libvirt QEMU save image.
var errNotSaveImage = errors.New("not a complete libvirt QEMU save image")

// readSaveImage reads the header and XML of the save image r.
func readSaveImage(r io.ReaderAt) (*saveImage, error) {
	hdr := make([]byte, saveHeaderSize)
	if _, err := r.ReadAt(hdr, 0); err != nil {
		return nil, fmt.Errorf("%w: read header: %v", errNotSaveImage, err)
	}
	switch string(hdr[:16]) {
	case saveMagic:
	case savePartialMagic:
		return nil, fmt.Errorf("%w: libvirt did not finish writing it", errNotSaveImage)
	default:
		return nil, fmt.Errorf("%w: bad magic %q", errNotSaveImage, hdr[:16])
	}
	le := binary.LittleEndian
	img := &saveImage{
		version:    le.Uint32(hdr[16:]),
		wasRunning: le.Uint32(hdr[24:]),
		compressed: le.Uint32(hdr[28:]),
	}
	dataLen, cookieOffset := le.Uint32(hdr[20:]), le.Uint32(hdr[32:])
	copy(img.unused[:], hdr[36:])
	if img.version != 2 {
		return nil, fmt.Errorf("%w: version %d, want 2", errNotSaveImage, img.version)
	}
	if dataLen == 0 || dataLen > maxSaveData || cookieOffset >= dataLen {
		return nil, fmt.Errorf("%w: data length %d, cookie offset %d", errNotSaveImage, dataLen, cookieOffset)
	}
	data := make([]byte, dataLen)
	if _, err := r.ReadAt(data, saveHeaderSize); err != nil {
		return nil, fmt.Errorf("%w: read domain XML: %v", errNotSaveImage, err)
	}
	end := bytes.IndexByte(data, 0)
	if end <= 0 {
		return nil, fmt.Errorf("%w: domain XML is not NUL-terminated", errNotSaveImage)
	}
	img.xml = string(data[:end])
	if cookieOffset != 0 {
		if int(cookieOffset) <= end {
			return nil, fmt.Errorf("%w: cookie offset %d inside the XML", errNotSaveImage, cookieOffset)
		}
		n := bytes.IndexByte(data[cookieOffset:], 0)
		if n < 0 {
			return nil, fmt.Errorf("%w: cookie is not NUL-terminated", errNotSaveImage)
		}
		img.cookie = data[cookieOffset : int(cookieOffset)+n+1]
	}
	img.streamOffset = saveHeaderSize + int64(dataLen)
	return img, nil
}

// streamSaveImage writes to out a save image with img's header and cookie,
// the domain XML xml, and the migration stream of src (the file img was
// read from), so libvirt restores a domain described by xml from src's
// memory.
func streamSaveImage(out *os.File, src *os.File, img *saveImage, xml string) error {
	xmlLen := len(xml) + 1
	data := make([]byte, 0, xmlLen+len(img.cookie)+saveXMLRoom)
	data = append(data, xml...)
	data = append(data, 0)
	cookieOffset := 0
	if len(img.cookie) > 0 {
		cookieOffset = xmlLen
		data = append(data, img.cookie...)
	}
	data = append(data, make([]byte, saveXMLRoom)...)
	if len(data) > maxSaveData {
		return fmt.Errorf("domain XML too large")
	}

	hdr := make([]byte, saveHeaderSize)
	copy(hdr, saveMagic)
	le := binary.LittleEndian
	le.PutUint32(hdr[16:], img.version)
	le.PutUint32(hdr[20:], uint32(len(data)))
	le.PutUint32(hdr[24:], img.wasRunning)
	le.PutUint32(hdr[28:], img.compressed)
	le.PutUint32(hdr[32:], uint32(cookieOffset))
	copy(hdr[36:], img.unused[:])

	if _, err := out.Write(append(hdr, data...)); err != nil {
		return err
	}
	if _, err := src.Seek(img.streamOffset, io.SeekStart); err != nil {
		return err
	}
	if _, err := io.Copy(out, src); err != nil {
		return fmt.Errorf("copy memory: %w", err)
	}
	return nil
}

// saveImagePipe feeds libvirt a clone's save image through a FIFO: the
// header and XML, then the source's memory straight from its image, as
// libvirt and QEMU read them. Nothing is copied to disk first, and QEMU
// loads the memory while it is still being read.
type saveImagePipe struct {
	path   string
	done   chan struct{} // closed once the restore call returned
	result chan error
}

// errPipeNotOpened says libvirt never opened the pipe (its restore failed
// before it read the image).
var errPipeNotOpened = errors.New("libvirt did not open the save image")

// openSaveImagePipe makes the FIFO path (replacing whatever is there) and
// starts feeding it; close it once the restore call returned.
func openSaveImagePipe(path string, src *os.File, img *saveImage, xml string) (*saveImagePipe, error) {
	_ = os.Remove(path)
	if err := unix.Mkfifo(path, 0o600); err != nil {
		return nil, fmt.Errorf("create the save image pipe %s: %w", path, err)
	}
	p := &saveImagePipe{path: path, done: make(chan struct{}), result: make(chan error, 1)}
	go func() { p.result <- p.feed(src, img, xml) }()
	return p, nil
}

// feed waits until libvirt opens the pipe, then writes the image into it.
// A write after the reader went away fails (EPIPE), so feed never outlives
// the restore for long.
func (p *saveImagePipe) feed(src *os.File, img *saveImage, xml string) error {
	var fd int
	for {
		var err error
		// Non-blocking, an open for writing fails (ENXIO) until a reader
		// has the pipe open, or is waiting in open(2) for a writer.
		fd, err = unix.Open(p.path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.ENXIO) {
			return fmt.Errorf("open the save image pipe: %w", err)
		}
		select {
		case <-p.done:
			return errPipeNotOpened
		case <-time.After(time.Millisecond):
		}
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return fmt.Errorf("the save image pipe: %w", err)
	}
	// A larger pipe means fewer wakeups of QEMU and of this writer; the
	// default size works too.
	_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, 1<<20)
	out := os.NewFile(uintptr(fd), p.path)
	defer out.Close()
	if err := streamSaveImage(out, src, img, xml); err != nil {
		return fmt.Errorf("feed the save image: %w", err)
	}
	return nil
}

// close is called once the restore call returned: it stops a feed that
// never started, waits for the one that did, removes the pipe and returns
// the feed's error.
func (p *saveImagePipe) close() error {
	close(p.done)
	err := <-p.result
	_ = os.Remove(p.path)
	return err
}
