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

package registry

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage"

	"github.com/vessel-vm/vessel/apis/vessel"
)

// Resource is everything needed to build a kind's etcd-backed store.
type Resource[T Object] struct {
	Kind Kind[T]
	// New and NewList return empty internal objects.
	New, NewList func() runtime.Object
	// Plural and Singular are the resource names, e.g. "hypervisors".
	Plural, Singular string
	ShortNames       []string
	Table            rest.TableConvertor
	// Triggers index watch events by a field so a field-selected watcher gets
	// only its own.
	Triggers map[string]storage.IndexerFunc
}

// Stores is a kind's main resource and status subresource, sharing Store.
type Stores struct {
	Store  *genericregistry.Store
	Main   *REST
	Status *StatusREST
}

// Build completes the generic store against etcd.
func (r Resource[T]) Build(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter) (*Stores, error) {
	strategy, statusStrategy := NewStrategies(scheme, r.Kind)
	store := &genericregistry.Store{
		NewFunc:                   r.New,
		NewListFunc:               r.NewList,
		PredicateFunc:             r.Kind.Matcher,
		DefaultQualifiedResource:  vessel.Resource(r.Plural),
		SingularQualifiedResource: vessel.Resource(r.Singular),
		CreateStrategy:            strategy,
		UpdateStrategy:            strategy,
		DeleteStrategy:            strategy,
		ResetFieldsStrategy:       strategy,
		TableConvertor:            r.Table,
	}
	options := &generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: r.Kind.GetAttrs, TriggerFunc: r.Triggers}
	if err := store.CompleteWithOptions(options); err != nil {
		return nil, fmt.Errorf("complete %s store: %w", r.Plural, err)
	}
	return &Stores{
		Store:  store,
		Main:   NewREST(store, r.ShortNames...),
		Status: NewStatusREST(store, statusStrategy),
	}, nil
}
