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

package pool

import (
	"context"
	"fmt"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/vessel-vm/vessel/apis/vessel"
	"github.com/vessel-vm/vessel/apis/vessel/validation"
)

// ScaleREST is a pool's scale subresource: the autoscaling/v1 Scale that
// `kubectl scale` and autoscalers read and write. Writing it sets
// spec.replicas and nothing else.
type ScaleREST struct {
	store *genericregistry.Store
}

var (
	_ rest.Getter                   = &ScaleREST{}
	_ rest.Updater                  = &ScaleREST{}
	_ rest.GroupVersionKindProvider = &ScaleREST{}
)

// ScaleGroupVersion is the group and version the Scale is served in.
var ScaleGroupVersion = autoscalingv1.SchemeGroupVersion

// GroupVersionKind says the subresource speaks autoscaling/v1 Scale, which
// is how kubectl finds out how to scale a vmpool.
func (r *ScaleREST) GroupVersionKind(schema.GroupVersion) schema.GroupVersionKind {
	return ScaleGroupVersion.WithKind("Scale")
}

func (r *ScaleREST) New() runtime.Object { return &autoscalingv1.Scale{} }

// Destroy does nothing: the store is shared with the main resource.
func (r *ScaleREST) Destroy() {}

// Get returns the pool's Scale.
func (r *ScaleREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	obj, err := r.store.Get(ctx, name, options)
	if err != nil {
		return nil, err
	}
	return scaleOf(obj.(*vessel.VirtualMachinePool)), nil
}

// Update applies a new Scale (an update or a patch of it) to the pool's
// spec.replicas.
func (r *ScaleREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc, _ bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	obj, _, err := r.store.Update(ctx, name, &scaleUpdate{objInfo: objInfo}, toPoolCreateValidation(createValidation), toPoolUpdateValidation(updateValidation), false, options)
	if err != nil {
		return nil, false, err
	}
	return scaleOf(obj.(*vessel.VirtualMachinePool)), false, nil
}

func scaleOf(p *vessel.VirtualMachinePool) *autoscalingv1.Scale {
	var replicas int32
	if p.Spec.Replicas != nil {
		replicas = *p.Spec.Replicas
	}
	return &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{
			Name:              p.Name,
			Namespace:         p.Namespace,
			UID:               p.UID,
			ResourceVersion:   p.ResourceVersion,
			CreationTimestamp: p.CreationTimestamp,
		},
		Spec:   autoscalingv1.ScaleSpec{Replicas: replicas},
		Status: autoscalingv1.ScaleStatus{Replicas: p.Status.Replicas, Selector: p.Status.Selector},
	}
}

// scaleUpdate turns an update of the Scale into one of the pool.
type scaleUpdate struct {
	objInfo rest.UpdatedObjectInfo
}

func (u *scaleUpdate) Preconditions() *metav1.Preconditions { return u.objInfo.Preconditions() }

func (u *scaleUpdate) UpdatedObject(ctx context.Context, oldObj runtime.Object) (runtime.Object, error) {
	pool, ok := oldObj.(*vessel.VirtualMachinePool)
	if !ok {
		return nil, fmt.Errorf("unexpected object %T", oldObj)
	}
	pool = pool.DeepCopy()
	old := scaleOf(pool)
	obj, err := u.objInfo.UpdatedObject(ctx, old)
	if err != nil {
		return nil, err
	}
	scale, ok := obj.(*autoscalingv1.Scale)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("expected an autoscaling/v1 Scale, got %T", obj))
	}
	path := field.NewPath("spec", "replicas")
	if scale.Spec.Replicas < 0 || scale.Spec.Replicas > validation.MaxPoolReplicas {
		return nil, apierrors.NewInvalid(schema.GroupKind{Group: ScaleGroupVersion.Group, Kind: "Scale"}, pool.Name,
			field.ErrorList{field.Invalid(path, scale.Spec.Replicas, fmt.Sprintf("must be between 0 and %d", validation.MaxPoolReplicas))})
	}
	if scale.ResourceVersion != "" && scale.ResourceVersion != pool.ResourceVersion {
		return nil, apierrors.NewConflict(vessel.Resource("virtualmachinepools/scale"), pool.Name,
			fmt.Errorf("the pool has changed since resourceVersion %s; read it again", scale.ResourceVersion))
	}
	replicas := scale.Spec.Replicas
	pool.Spec.Replicas = &replicas
	return pool, nil
}

// Admission sees the Scale, not the pool (as for ReplicaSets).
func toPoolCreateValidation(f rest.ValidateObjectFunc) rest.ValidateObjectFunc {
	return func(ctx context.Context, obj runtime.Object) error {
		return f(ctx, scaleOf(obj.(*vessel.VirtualMachinePool)))
	}
}

func toPoolUpdateValidation(f rest.ValidateObjectUpdateFunc) rest.ValidateObjectUpdateFunc {
	return func(ctx context.Context, obj, old runtime.Object) error {
		return f(ctx, scaleOf(obj.(*vessel.VirtualMachinePool)), scaleOf(old.(*vessel.VirtualMachinePool)))
	}
}
