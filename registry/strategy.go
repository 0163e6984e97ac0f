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

// Package registry holds what every vessel.dev resource's storage shares: a
// spec strategy and a status strategy built from a few per-kind functions,
// table printing, and the REST types that publish short names and categories.
package registry

import (
	"context"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

// Object is an API object with metadata: every vessel.dev kind.
type Object interface {
	runtime.Object
	metav1.Object
}

// Kind describes one resource to the shared strategies. Spec and status are
// kept apart: the main resource never writes status and the status
// subresource never writes spec.
type Kind[T Object] struct {
	// Namespaced is false for cluster-scoped kinds.
	Namespaced bool
	// ResetFieldsVersion is the served version server-side apply tracks.
	ResetFieldsVersion string
	// ServerOwnedSpec are spec fields only subresources write (paths such as
	// "spec", "powerAction"): server-side apply never assigns them to a
	// writer of the main resource. KeepStatus must preserve them.
	ServerOwnedSpec [][]string
	// PrepareForCreate clears status (and sets its initial value).
	PrepareForCreate func(obj T)
	// KeepStatus copies old status into an object updated through the main resource.
	KeepStatus func(obj, old T)
	// KeepSpec copies old spec into an object updated through the status subresource.
	KeepSpec func(obj, old T)
	// Spec returns the object's spec, compared to decide whether generation moves.
	Spec func(obj T) any
	// Validate, ValidateUpdate and ValidateStatusUpdate are the kind's validation.
	Validate             func(obj T) field.ErrorList
	ValidateUpdate       func(obj, old T) field.ErrorList
	ValidateStatusUpdate func(obj, old T) field.ErrorList
	// Resolve, when set, runs on create with the request context, after
	// PrepareForCreate: it looks up the objects obj refers to, fills in
	// what follows from them (owner references) and reports references
	// that do not resolve. Storage rejects the create with those errors.
	Resolve func(ctx context.Context, obj T) field.ErrorList
	// Fields are the field selectors the kind serves, besides metadata.name and
	// metadata.namespace.
	Fields func(obj T) fields.Set
}

// SpecStrategy is the create/update/delete strategy of a kind's main resource.
type SpecStrategy[T Object] struct {
	runtime.ObjectTyper
	names.NameGenerator
	kind Kind[T]
}

// StatusStrategy is the update strategy of a kind's status subresource.
type StatusStrategy[T Object] struct {
	SpecStrategy[T]
}

// NewStrategies returns the spec and status strategies of a kind.
func NewStrategies[T Object](typer runtime.ObjectTyper, kind Kind[T]) (SpecStrategy[T], StatusStrategy[T]) {
	spec := SpecStrategy[T]{ObjectTyper: typer, NameGenerator: names.SimpleNameGenerator, kind: kind}
	return spec, StatusStrategy[T]{spec}
}

func (s SpecStrategy[T]) NamespaceScoped() bool { return s.kind.Namespaced }

// GetResetFields says status belongs to the status subresource, so
// server-side apply never records it as owned by a spec writer.
func (s SpecStrategy[T]) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	paths := []fieldpath.Path{fieldpath.MakePathOrDie("status")}
	for _, p := range s.kind.ServerOwnedSpec {
		parts := make([]any, len(p))
		for i, part := range p {
			parts[i] = part
		}
		paths = append(paths, fieldpath.MakePathOrDie(parts...))
	}
	return map[fieldpath.APIVersion]*fieldpath.Set{
		fieldpath.APIVersion(s.kind.ResetFieldsVersion): fieldpath.NewSet(paths...),
	}
}

func (s SpecStrategy[T]) PrepareForCreate(_ context.Context, obj runtime.Object) {
	o := obj.(T)
	o.SetGeneration(1)
	s.kind.PrepareForCreate(o)
}

func (s SpecStrategy[T]) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	o, prev := obj.(T), old.(T)
	s.kind.KeepStatus(o, prev)
	if !apiequality.Semantic.DeepEqual(s.kind.Spec(o), s.kind.Spec(prev)) {
		o.SetGeneration(prev.GetGeneration() + 1)
	}
}

func (s SpecStrategy[T]) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	errs := s.kind.Validate(obj.(T))
	if s.kind.Resolve != nil && len(errs) == 0 {
		errs = s.kind.Resolve(ctx, obj.(T))
	}
	return errs
}

func (s SpecStrategy[T]) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	return s.kind.ValidateUpdate(obj.(T), old.(T))
}

func (SpecStrategy[T]) WarningsOnCreate(context.Context, runtime.Object) []string { return nil }

func (SpecStrategy[T]) WarningsOnUpdate(context.Context, runtime.Object, runtime.Object) []string {
	return nil
}

func (SpecStrategy[T]) Canonicalize(runtime.Object) {}

func (SpecStrategy[T]) AllowCreateOnUpdate(context.Context) bool { return false }

// AllowUnconditionalUpdate lets `kubectl replace` and patches without a
// resourceVersion through, as for every built-in kind.
func (SpecStrategy[T]) AllowUnconditionalUpdate(context.Context) bool { return true }

// GetResetFields says spec and the metadata PrepareForUpdate keeps belong
// to the main resource, so server-side apply through status never records
// them as owned by a status writer.
func (s StatusStrategy[T]) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		fieldpath.APIVersion(s.kind.ResetFieldsVersion): fieldpath.NewSet(
			fieldpath.MakePathOrDie("spec"),
			fieldpath.MakePathOrDie("metadata", "labels"),
			fieldpath.MakePathOrDie("metadata", "annotations"),
			fieldpath.MakePathOrDie("metadata", "finalizers"),
			fieldpath.MakePathOrDie("metadata", "ownerReferences"),
		),
	}
}

// PrepareForUpdate keeps everything but status, as for custom resources:
// labels, annotations, finalizers and owner references sent to the status
// subresource are ignored. Whoever may write status (agents) therefore
// cannot change what selects an object, holds its deletion or ties it to
// an owner; they remove finalizers through the main resource, where
// admission checks them.
func (s StatusStrategy[T]) PrepareForUpdate(_ context.Context, obj, old runtime.Object) {
	o, prev := obj.(T), old.(T)
	s.kind.KeepSpec(o, prev)
	metav1.ResetObjectMetaForStatus(o, prev)
}

func (s StatusStrategy[T]) ValidateUpdate(_ context.Context, obj, old runtime.Object) field.ErrorList {
	return s.kind.ValidateStatusUpdate(obj.(T), old.(T))
}

// GetAttrs returns the labels and selectable fields of an object of the kind.
func (k Kind[T]) GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	o := obj.(T)
	set := fields.Set{"metadata.name": o.GetName()}
	if k.Namespaced {
		set["metadata.namespace"] = o.GetNamespace()
	}
	if k.Fields != nil {
		set = generic.MergeFieldsSets(set, k.Fields(o))
	}
	return labels.Set(o.GetLabels()), set, nil
}

// Matcher returns the predicate a list or watch filters by.
func (k Kind[T]) Matcher(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{Label: label, Field: field, GetAttrs: k.GetAttrs}
}
