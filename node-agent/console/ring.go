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

package console

// Ring keeps the most recent bytes written to it, up to a fixed size. It is
// not safe for concurrent use; the Hub guards it.
type Ring struct {
	buf   []byte
	start int // index of the oldest byte
	n     int // bytes held
}

// NewRing returns a ring holding at most size bytes.
func NewRing(size int) *Ring {
	if size <= 0 {
		size = 1
	}
	return &Ring{buf: make([]byte, size)}
}

// Write appends p, dropping the oldest bytes beyond the ring's size. It
// never fails.
func (r *Ring) Write(p []byte) (int, error) {
	written := len(p)
	size := len(r.buf)
	if len(p) >= size {
		copy(r.buf, p[len(p)-size:])
		r.start, r.n = 0, size
		return written, nil
	}
	end := (r.start + r.n) % size
	k := copy(r.buf[end:], p)
	copy(r.buf, p[k:])
	r.n += len(p)
	if r.n > size {
		r.start = (r.start + r.n - size) % size
		r.n = size
	}
	return written, nil
}

// Len is how many bytes the ring holds.
func (r *Ring) Len() int { return r.n }

// Cap is the most the ring holds.
func (r *Ring) Cap() int { return len(r.buf) }

// Tail returns a copy of the last n bytes held (all of them when n is
// larger than Len or not positive).
func (r *Ring) Tail(n int) []byte {
	if n <= 0 || n > r.n {
		n = r.n
	}
	out := make([]byte, n)
	size := len(r.buf)
	first := (r.start + r.n - n) % size
	k := copy(out, r.buf[first:min(first+n, size)])
	copy(out[k:], r.buf[:n-k])
	return out
}
