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

package validation

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vessel-vm/vessel/apis/vessel"
)

// hostPathPolicy decides which host paths a VM may use, and how.
type hostPathPolicy struct {
	// shared are the clean, absolute roots VMs may read from.
	shared []string
	// writable are the clean, absolute roots divided per namespace: a VM
	// may read and write under <root>/<its namespace>/ only.
	writable []string
	// namespace is the VM's namespace.
	namespace string
	// unchanged are host path uses the stored object already has. They are
	// not checked against roots again, so narrowing the server's roots does
	// not make existing VMs impossible to update (or to stop, which is an
	// update); the agent re-checks every path on the host anyway.
	unchanged map[hostPathUse]bool
}

// hostPathUse is one host path of a spec, and whether the VM may write it.
type hostPathUse struct {
	path     string
	writable bool
}

func newHostPathPolicy(opts Options, namespace string) hostPathPolicy {
	return hostPathPolicy{
		shared:    cleanRoots(opts.AllowedHostPathRoots),
		writable:  cleanRoots(opts.WritableHostPathRoots),
		namespace: namespace,
	}
}

var sha256Regexp = regexp.MustCompile(`^[0-9a-f]{64}$`)

var supportedDiskFormats = []vessel.DiskFormat{vessel.DiskFormatRaw, vessel.DiskFormatQCOW2}

// validateFormat checks a disk's declared format (defaulted, so required),
// and refuses one on a kernel or initrd.
func validateFormat(format vessel.DiskFormat, isDisk bool, fldPath *field.Path) field.ErrorList {
	if isDisk {
		return validateEnum(format, supportedDiskFormats, fldPath)
	}
	if format != "" {
		return field.ErrorList{field.Forbidden(fldPath, "a kernel or initrd is a file QEMU loads, not a disk: it has no format")}
	}
	return nil
}

// validateImageSource checks an image to download, for a disk or a file.
func validateImageSource(src *vessel.ImageSource, isDisk bool, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	allErrs = append(allErrs, validateImageURL(src.URL, fldPath.Child("url"))...)
	allErrs = append(allErrs, validateFormat(src.Format, isDisk, fldPath.Child("format"))...)

	sumPath := fldPath.Child("sha256")
	switch {
	case src.SHA256 == "":
		allErrs = append(allErrs, field.Required(sumPath, "the download is verified against it"))
	case !sha256Regexp.MatchString(src.SHA256):
		allErrs = append(allErrs, field.Invalid(sumPath, src.SHA256, "must be 64 lowercase hexadecimal characters"))
	}
	return allErrs
}

// validateImageURL checks an http(s) URL. Error values never echo a URL that
// may carry credentials: errors end up in responses, events and audit logs.
func validateImageURL(raw string, fldPath *field.Path) field.ErrorList {
	if raw == "" {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	if len(raw) > MaxURLLength {
		return field.ErrorList{field.TooLong(fldPath, "", MaxURLLength)}
	}
	u, err := url.Parse(raw)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return field.ErrorList{field.Invalid(fldPath, field.OmitValueType{}, fmt.Sprintf("must be a valid URL: %v", err))}
	}
	var allErrs field.ErrorList
	if u.User != nil {
		allErrs = append(allErrs, field.Invalid(fldPath, u.Redacted(), "must not contain user information: credentials in a URL are readable by anyone who can read the VM"))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		allErrs = append(allErrs, field.Invalid(fldPath, u.Redacted(), fmt.Sprintf("scheme must be http or https, not %q", u.Scheme)))
	}
	if u.Hostname() == "" {
		allErrs = append(allErrs, field.Invalid(fldPath, u.Redacted(), "must include a host"))
	}
	return allErrs
}

// validateHostPathSource checks a host path lexically against the roots: a
// shared root's files may only be read, a writable root's only by VMs of
// the namespace whose directory holds them. isDisk says it is a disk (with
// a format) rather than a kernel or initrd, which QEMU only ever reads;
// readOnlyPath is the disk's readOnly field. The node agent resolves
// symbolic links on the host and refuses any that lead out of the roots.
func validateHostPathSource(src *vessel.HostPathSource, policy hostPathPolicy, isDisk, readOnly bool, fldPath, readOnlyPath *field.Path) field.ErrorList {
	allErrs := validateFormat(src.Format, isDisk, fldPath.Child("format"))
	pathPath := fldPath.Child("path")
	p := src.Path
	switch {
	case p == "":
		return append(allErrs, field.Required(pathPath, ""))
	case strings.ContainsRune(p, 0):
		return append(allErrs, field.Invalid(pathPath, p, "must not contain NUL bytes"))
	case !filepath.IsAbs(p):
		return append(allErrs, field.Invalid(pathPath, p, "must be an absolute path"))
	case hasBacksteps(p):
		return append(allErrs, field.Invalid(pathPath, p, "must not contain '..'"))
	case filepath.Clean(p) != p:
		return append(allErrs, field.Invalid(pathPath, p, fmt.Sprintf("must be a clean path (%q)", filepath.Clean(p))))
	}
	writable := isDisk && !readOnly
	if policy.unchanged[hostPathUse{p, writable}] {
		return allErrs
	}
	if policy.namespace == "" {
		return allErrs // metadata.namespace is required; nothing to confine to
	}
	if len(policy.shared) == 0 && len(policy.writable) == 0 {
		return append(allErrs, field.Forbidden(fldPath, "this server allows no host paths: it is configured without host path roots"))
	}
	for _, root := range policy.writable {
		if !isStrictlyUnder(p, root) {
			continue
		}
		if isStrictlyUnder(p, filepath.Join(root, policy.namespace)) {
			return allErrs
		}
		return append(allErrs, field.Forbidden(pathPath, fmt.Sprintf("%s is a writable host path root, divided per namespace: this VM's files must be under %s/",
			root, filepath.Join(root, policy.namespace))))
	}
	for _, root := range policy.shared {
		if !isStrictlyUnder(p, root) {
			continue
		}
		if writable {
			return append(allErrs, field.Invalid(readOnlyPath, false, fmt.Sprintf("must be true: %s is under the shared host path root %s, which VMs may only read%s",
				p, root, policy.writableHint())))
		}
		return allErrs
	}
	return append(allErrs, field.Forbidden(pathPath, "must be under "+policy.allowedRoots()))
}

// allowedRoots lists where this VM's host paths may lie.
func (p hostPathPolicy) allowedRoots() string {
	var parts []string
	if len(p.shared) > 0 {
		parts = append(parts, "a shared host path root (read-only): "+strings.Join(p.shared, ", "))
	}
	if len(p.writable) > 0 {
		dirs := make([]string, len(p.writable))
		for i, root := range p.writable {
			dirs[i] = filepath.Join(root, p.namespace) + "/"
		}
		parts = append(parts, "this namespace's directory of a writable root: "+strings.Join(dirs, ", "))
	}
	return strings.Join(parts, ", or ")
}

// writableHint says where writable disks may go, when anywhere.
func (p hostPathPolicy) writableHint() string {
	if len(p.writable) == 0 {
		return ""
	}
	return "; writable disks go under " + filepath.Join(p.writable[0], p.namespace) + "/"
}

// hasBacksteps reports whether a path has a ".." element.
func hasBacksteps(p string) bool {
	for _, elem := range strings.Split(filepath.ToSlash(p), "/") {
		if elem == ".." {
			return true
		}
	}
	return false
}

// isStrictlyUnder reports whether clean path p lies beneath clean directory
// root. The root itself is a directory, never a disk or kernel file.
func isStrictlyUnder(p, root string) bool {
	if root == "/" {
		return p != "/"
	}
	return strings.HasPrefix(p, root+"/")
}

// validateFileSource checks a kernel or initrd: exactly one of image and hostPath.
func validateFileSource(src *vessel.FileSource, policy hostPathPolicy, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	numSources := 0
	if src.Image != nil {
		numSources++
		allErrs = append(allErrs, validateImageSource(src.Image, false, fldPath.Child("image"))...)
	}
	if src.HostPath != nil {
		if numSources > 0 {
			allErrs = append(allErrs, field.Forbidden(fldPath.Child("hostPath"), "may not specify more than one source"))
		} else {
			numSources++
			allErrs = append(allErrs, validateHostPathSource(src.HostPath, policy, false, true, fldPath.Child("hostPath"), nil)...)
		}
	}
	if numSources == 0 {
		allErrs = append(allErrs, field.Required(fldPath, "must specify one source: image or hostPath"))
	}
	return allErrs
}

// validateBlankSource checks the size of a new empty disk.
func validateBlankSource(src *vessel.BlankSource, fldPath *field.Path) field.ErrorList {
	sizePath := fldPath.Child("size")
	if src.Size.Sign() <= 0 {
		return field.ErrorList{field.Invalid(sizePath, src.Size.String(), "must be greater than zero")}
	}
	return validateWholeBytesInRange(src.Size, *resource.NewQuantity(1, resource.BinarySI), maxBlankDiskSize, sizePath)
}

// validateCloudInitSource checks a NoCloud seed's size.
func validateCloudInitSource(src *vessel.CloudInitSource, fldPath *field.Path) field.ErrorList {
	if n := len(src.UserData) + len(src.NetworkData); n > MaxCloudInitBytes {
		err := field.TooLong(fldPath, "", MaxCloudInitBytes)
		err.Detail = fmt.Sprintf("userData and networkData together may not be more than %d bytes (got %d)", MaxCloudInitBytes, n)
		return field.ErrorList{err}
	}
	ref := src.UserDataSecretRef
	if ref == nil {
		return nil
	}
	refPath := fldPath.Child("userDataSecretRef")
	var allErrs field.ErrorList
	if src.UserData != "" {
		allErrs = append(allErrs, field.Forbidden(refPath, "may not be set together with userData: the user data comes from one of them"))
	}
	allErrs = append(allErrs, validateReferenceName(ref.Name, apimachineryvalidation.NameIsDNSSubdomain, refPath.Child("name"))...)
	keyPath := refPath.Child("key")
	if ref.Key == "" {
		return append(allErrs, field.Required(keyPath, ""))
	}
	if msgs := utilvalidation.IsConfigMapKey(ref.Key); len(msgs) > 0 {
		allErrs = append(allErrs, field.Invalid(keyPath, ref.Key, strings.Join(msgs, "; ")))
	}
	return allErrs
}
