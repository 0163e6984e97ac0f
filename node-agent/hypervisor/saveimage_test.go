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
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeSaveImage writes a save image as libvirt lays it out: header, XML,
// cookie, padding, then the stream.
func fakeSaveImage(t *testing.T, path, xml, cookie string, stream []byte) {
	t.Helper()
	data := append([]byte(xml), 0)
	cookieOffset := 0
	if cookie != "" {
		cookieOffset = len(data)
		data = append(append(data, cookie...), 0)
	}
	data = append(data, make([]byte, 100)...)
	hdr := make([]byte, saveHeaderSize)
	copy(hdr, saveMagic)
	binary.LittleEndian.PutUint32(hdr[16:], 2)
	binary.LittleEndian.PutUint32(hdr[20:], uint32(len(data)))
	binary.LittleEndian.PutUint32(hdr[24:], 1)
	binary.LittleEndian.PutUint32(hdr[32:], uint32(cookieOffset))
	if err := os.WriteFile(path, append(append(hdr, data...), stream...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A rewritten image carries the new XML, the old cookie and header fields,
// and the migration stream byte for byte.
func TestSaveImageRewriteKeepsCookieAndStream(t *testing.T) {
	dir := t.TempDir()
	stream := bytes.Repeat([]byte("QEVM\x00\x00\x00\x03stream"), 5000)
	f, img := openFakeSaveImage(t, dir, "<domain>old</domain>", "<cookie>cpu</cookie>", stream)
	if img.xml != "<domain>old</domain>" || string(img.cookie) != "<cookie>cpu</cookie>\x00" || img.wasRunning != 1 {
		t.Fatalf("read %+v", img)
	}
	// The rewritten image comes through the pipe RestoreClone hands
	// libvirt, read the way libvirt reads it.
	dst := filepath.Join(dir, "dst.save")
	newXML := "<domain>a much longer new definition than before</domain>"
	pipe, err := openSaveImagePipe(dst, f, img, newXML)
	if err != nil {
		t.Fatal(err)
	}
	all, rerr := os.ReadFile(dst)
	if err := pipe.close(); err != nil {
		t.Fatalf("feed: %v", err)
	}
	if rerr != nil {
		t.Fatal(rerr)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("the pipe is still there after close (%v)", err)
	}
	back, err := readSaveImage(bytes.NewReader(all))
	if err != nil {
		t.Fatal(err)
	}
	if back.xml != newXML || !bytes.Equal(back.cookie, img.cookie) || back.wasRunning != 1 || back.version != 2 {
		t.Errorf("rewritten image: %+v", back)
	}
	if !bytes.Equal(all[back.streamOffset:], stream) {
		t.Errorf("the stream changed: %d bytes after offset %d, want %d", len(all)-int(back.streamOffset), back.streamOffset, len(stream))
	}
}

// openFakeSaveImage writes a save image into dir (fakeSaveImage), opens
// it and reads its header; the file closes when the test ends.
func openFakeSaveImage(t *testing.T, dir, xml, cookie string, stream []byte) (*os.File, *saveImage) {
	t.Helper()
	src := filepath.Join(dir, "src.save")
	fakeSaveImage(t, src, xml, cookie, stream)
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	img, err := readSaveImage(f)
	if err != nil {
		t.Fatal(err)
	}
	return f, img
}

// A restore that fails before libvirt opens the pipe leaves no feeder
// waiting and no pipe behind.
func TestSaveImagePipeNobodyOpened(t *testing.T) {
	dir := t.TempDir()
	f, img := openFakeSaveImage(t, dir, "<domain>old</domain>", "", []byte("stream"))
	pipe, err := openSaveImagePipe(filepath.Join(dir, "p.save"), f, img, "<domain>new</domain>")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if err := pipe.close(); !errors.Is(err, errPipeNotOpened) {
		t.Errorf("close of a pipe nobody opened: %v, want errPipeNotOpened", err)
	}
	if _, err := os.Stat(pipe.path); !os.IsNotExist(err) {
		t.Errorf("the pipe is still there after close (%v)", err)
	}
}

func TestReadSaveImageRefusesWhatIsNotOne(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string][]byte{
		"short":   []byte("LibvirtQemudSave"),
		"magic":   append([]byte("NotLibvirtAtAll!"), make([]byte, 200)...),
		"partial": append([]byte(savePartialMagic), make([]byte, 200)...),
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := readSaveImage(f); !errors.Is(err, errNotSaveImage) {
			t.Errorf("%s: %v, want errNotSaveImage", name, err)
		}
		f.Close()
	}
}
