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
	src := filepath.Join(dir, "src.save")
	fakeSaveImage(t, src, "<domain>old</domain>", "<cookie>cpu</cookie>", stream)

	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := readSaveImage(f)
	if err != nil {
		t.Fatal(err)
	}
	if img.xml != "<domain>old</domain>" || string(img.cookie) != "<cookie>cpu</cookie>\x00" || img.wasRunning != 1 {
		t.Fatalf("read %+v", img)
	}
	dst := filepath.Join(dir, "dst.save")
	newXML := "<domain>a much longer new definition than before</domain>"
	if err := writeSaveImage(dst, f, img, newXML); err != nil {
		t.Fatal(err)
	}
	g, err := os.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	back, err := readSaveImage(g)
	if err != nil {
		t.Fatal(err)
	}
	if back.xml != newXML || !bytes.Equal(back.cookie, img.cookie) || back.wasRunning != 1 || back.version != 2 {
		t.Errorf("rewritten image: %+v", back)
	}
	all, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(all[back.streamOffset:], stream) {
		t.Errorf("the stream changed: %d bytes after offset %d, want %d", len(all)-int(back.streamOffset), back.streamOffset, len(stream))
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
