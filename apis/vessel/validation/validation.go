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

// Package validation checks vessel.dev objects before they are stored. It
// works on the internal types after defaulting, and every function returns a
// field.ErrorList whose paths name the offending field, so the apiserver can
// answer 422 Invalid with the field and the reason.
package validation

import (
	"cmp"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/resource"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Options carries server configuration that validation depends on. Host
// paths are checked lexically; the agent re-checks them on the host,
// following symlinks.
type Options struct {
	// AllowedHostPathRoots are the shared roots: absolute, clean
	// directories whose files VMs may read (kernels, initrds, readOnly
	// disks) but never write.
	AllowedHostPathRoots []string
	// WritableHostPathRoots are absolute, clean directories divided per
	// namespace: a VM may use files under <root>/<its namespace>/ only,
	// read-only or writable.
	WritableHostPathRoots []string
	// AllowedBridges are the host bridges a VM's interfaces may connect
	// to; none allows no bridge interface. Agents enforce their own list
	// (--allowed-bridges) on their host; this one lets the API refuse
	// early and say why.
	AllowedBridges []string
}

// Bounds of the API. They are part of the contract users rely on: raising one
// is compatible, lowering one would make stored objects fail their next update.
const (
	// MinCPUs and MaxCPUs bound spec.cpus.
	MinCPUs = 1
	MaxCPUs = 256

	// MinMemory is the smallest guest memory accepted. A current x86-64
	// distribution kernel decompressing itself and unpacking even a small
	// initramfs needs roughly 64Mi; below 80Mi guests die of an out-of-memory
	// panic before their first console line, which users would see as an
	// unexplained crash rather than as a 422 naming spec.memory.
	MinMemory = "80Mi"
	// MaxMemory is the largest guest memory accepted.
	MaxMemory = "1Ti"
	// MaxBlankDiskSize is the largest blank disk accepted.
	MaxBlankDiskSize = "16Ti"

	// MaxDisks bounds spec.disks: enough for any real guest, small enough to
	// keep the domain on its default controllers and the object small.
	MaxDisks = 32
	// MaxInterfaces bounds spec.interfaces.
	MaxInterfaces = 8

	// MaxCmdlineBytes bounds spec.kernel.cmdline. It is the largest default
	// limit of any Linux architecture; a guest kernel may accept less (x86
	// advertises its own limit, commonly 2047 bytes, in its boot header).
	MaxCmdlineBytes = 4096
	// MaxCloudInitBytes bounds userData plus networkData of a cloudInit disk.
	// VMs are watched by every agent and stored in etcd, so seeds larger
	// than this belong in an image, not in the object.
	MaxCloudInitBytes = 64 * 1024

	// MaxGracePeriodSeconds bounds every grace period: how long a stop waits
	// for the guest before forcing it off.
	MaxGracePeriodSeconds = 3600

	// MaxURLLength bounds an image URL.
	MaxURLLength = 4096

	// maxLinuxIfnameLength is IFNAMSIZ - 1: Linux interface names are at
	// most 15 bytes.
	maxLinuxIfnameLength = 15
)

var (
	minMemory        = resource.MustParse(MinMemory)
	maxMemory        = resource.MustParse(MaxMemory)
	maxBlankDiskSize = resource.MustParse(MaxBlankDiskSize)
)

// validateEnum reports an empty value as Required (defaults have run, so an
// empty enum means the client cleared it) and an unknown one as NotSupported.
func validateEnum[T ~string](value T, supported []T, fldPath *field.Path) field.ErrorList {
	if value == "" {
		quoted := make([]string, len(supported))
		for i, v := range supported {
			quoted[i] = fmt.Sprintf("%q", v)
		}
		return field.ErrorList{field.Required(fldPath, "supported values: "+strings.Join(quoted, ", "))}
	}
	if !slices.Contains(supported, value) {
		return field.ErrorList{field.NotSupported(fldPath, value, supported)}
	}
	return nil
}

// validateOptionalEnum accepts an empty value; status fields are empty until
// their writer reports.
func validateOptionalEnum[T ~string](value T, supported []T, fldPath *field.Path) field.ErrorList {
	if value == "" {
		return nil
	}
	return validateEnum(value, supported, fldPath)
}

// validateReferenceName checks a required reference to another object by
// name, using the name rules of that object's kind.
func validateReferenceName(name string, nameFn apimachineryvalidation.ValidateNameFunc, fldPath *field.Path) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	var allErrs field.ErrorList
	for _, msg := range nameFn(name, false) {
		allErrs = append(allErrs, field.Invalid(fldPath, name, msg))
	}
	return allErrs
}

// validateOptionalReferenceName is validateReferenceName for a name that may
// be empty.
func validateOptionalReferenceName(name string, nameFn apimachineryvalidation.ValidateNameFunc, fldPath *field.Path) field.ErrorList {
	if name == "" {
		return nil
	}
	return validateReferenceName(name, nameFn, fldPath)
}

// validateWholeBytesInRange checks that q is a whole number of bytes within
// [lo, hi]. Fractions ("1.5" or milli-units) have no meaning for memory or
// disk sizes, and q.Value() would silently round them.
func validateWholeBytesInRange(q resource.Quantity, lo, hi resource.Quantity, fldPath *field.Path) field.ErrorList {
	if cmpQuantities(q, lo) < 0 {
		return field.ErrorList{field.Invalid(fldPath, q.String(), fmt.Sprintf("must be at least %s", lo.String()))}
	}
	if cmpQuantities(q, hi) > 0 {
		return field.ErrorList{field.Invalid(fldPath, q.String(), fmt.Sprintf("must be at most %s", hi.String()))}
	}
	if q.Cmp(*resource.NewQuantity(q.Value(), resource.BinarySI)) != 0 {
		return field.ErrorList{field.Invalid(fldPath, q.String(), "must be a whole number of bytes")}
	}
	return nil
}

// cmpQuantities is a.Cmp(b) without its unbounded cost: Cmp aligns the two
// decimal scales by multiplying out a power of ten, so comparing "1e999999999"
// with "1Ti" would compute a billion-digit number. Values more than two orders
// of magnitude apart are ordered by magnitude alone; only close values, whose
// scales are close too, reach Cmp.
func cmpQuantities(a, b resource.Quantity) int {
	sa, sb := a.Sign(), b.Sign()
	if sa != sb {
		return cmp.Compare(sa, sb)
	}
	if sa == 0 {
		return 0
	}
	ma, mb := decimalMagnitude(a), decimalMagnitude(b)
	switch {
	case ma > mb+2:
		return sa
	case mb > ma+2:
		return -sa
	}
	return a.Cmp(b)
}

// decimalMagnitude returns log10|q| to within one, in constant time. q is a
// copy: AsDec changes a Quantity's representation.
func decimalMagnitude(q resource.Quantity) int64 {
	d := q.AsDec()
	return int64(float64(d.UnscaledBig().BitLen())*math.Log10(2)) - int64(d.Scale())
}

// validateGracePeriod checks a grace period in seconds.
func validateGracePeriod(seconds int64, fldPath *field.Path) field.ErrorList {
	if seconds < 0 {
		return field.ErrorList{field.Invalid(fldPath, seconds, apimachineryvalidation.IsNegativeErrorMsg)}
	}
	if seconds > MaxGracePeriodSeconds {
		return field.ErrorList{field.Invalid(fldPath, seconds, fmt.Sprintf("must be at most %d", MaxGracePeriodSeconds))}
	}
	return nil
}

// validateConditions checks status conditions the way every Kubernetes API does.
func validateConditions(conditions []metav1.Condition, fldPath *field.Path) field.ErrorList {
	return metav1validation.ValidateConditions(conditions, fldPath)
}

// validateNoControlCharacters rejects invalid UTF-8 and control characters:
// such strings end up in libvirt XML, where most of them are not allowed.
func validateNoControlCharacters(value string, fldPath *field.Path) field.ErrorList {
	if !utf8.ValidString(value) {
		return field.ErrorList{field.Invalid(fldPath, value, "must be valid UTF-8")}
	}
	if i := strings.IndexFunc(value, unicode.IsControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString(value[i:])
		return field.ErrorList{field.Invalid(fldPath, value, fmt.Sprintf("must not contain control characters (found %q at byte %d)", r, i))}
	}
	return nil
}

// cleanRoots returns the configured roots in clean form, dropping any that are
// not absolute so a misconfiguration can never widen what is allowed.
func cleanRoots(roots []string) []string {
	out := make([]string, 0, len(roots))
	for _, r := range roots {
		if r == "" || !filepath.IsAbs(r) {
			continue
		}
		out = append(out, filepath.Clean(r))
	}
	return out
}

// ValidateHostPathRoots checks the host path roots a server or an agent is
// configured with: absolute, and no shared root inside a writable one or
// the other way round, so that a path is never both read-only to every
// namespace and writable by one.
func ValidateHostPathRoots(shared, writable []string) []error {
	var errs []error
	for flag, roots := range map[string][]string{"--allowed-host-path-roots": shared, "--writable-host-path-roots": writable} {
		for _, r := range roots {
			if !filepath.IsAbs(r) {
				errs = append(errs, fmt.Errorf("%s: %q is not an absolute path", flag, r))
			}
		}
	}
	for _, s := range cleanRoots(shared) {
		for _, w := range cleanRoots(writable) {
			if s == w || isStrictlyUnder(s, w) || isStrictlyUnder(w, s) {
				errs = append(errs, fmt.Errorf("shared host path root %s and writable root %s overlap: a file under both would be read-only to every namespace and writable by one", s, w))
			}
		}
	}
	return errs
}
