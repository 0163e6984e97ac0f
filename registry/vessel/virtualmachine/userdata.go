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

package virtualmachine

import (
	"context"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/vessel-vm/vessel/apis/vessel"
)

// SecretData reads the data of a Secret with the vessel-apiserver's own
// identity.
type SecretData func(ctx context.Context, namespace, name string) (map[string][]byte, error)

// UserDataREST is the userdata subresource (GET): the cloud-init user data
// of a VM, from its cloudInit disk's userDataSecretRef or userData. Only
// the agent of the hypervisor the VM is bound to may read it; the
// vessel-apiserver reads the Secret for it, so agents need no access to
// Secrets at all, and tenants who may only view a VM never see the data.
type UserDataREST struct {
	store  *genericregistry.Store
	guards Guards
}

var _ rest.Connecter = &UserDataREST{}

func (r *UserDataREST) New() runtime.Object                               { return &vessel.VirtualMachine{} }
func (r *UserDataREST) Destroy()                                          {}
func (r *UserDataREST) NamespaceScoped() bool                             { return true }
func (r *UserDataREST) ConnectMethods() []string                          { return []string{http.MethodGet} }
func (r *UserDataREST) NewConnectOptions() (runtime.Object, bool, string) { return nil, false, "" }

// Connect checks the requester is the VM's agent, then answers the user
// data as the body.
func (r *UserDataREST) Connect(ctx context.Context, name string, _ runtime.Object, responder rest.Responder) (http.Handler, error) {
	obj, err := r.store.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	vm := obj.(*vessel.VirtualMachine)
	if err := r.checkAgent(ctx, vm); err != nil {
		return nil, err
	}
	data, err := r.userData(ctx, vm)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(data)
	}), nil
}

// checkAgent allows only the agent of the hypervisor vm is bound to. RBAC
// lets agents get virtualmachines/userdata in general, so this is where
// each is narrowed to its own VMs.
func (r *UserDataREST) checkAgent(ctx context.Context, vm *vessel.VirtualMachine) error {
	forbidden := func(why string) error {
		return apierrors.NewForbidden(vessel.Resource("virtualmachines/userdata"), vm.Name, fmt.Errorf("%s", why))
	}
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok || r.guards.AgentOf == nil {
		return forbidden("only the node agent of the VM's hypervisor may read its user data")
	}
	hypervisor, isAgent := r.guards.AgentOf(u)
	switch {
	case !isAgent:
		return forbidden(fmt.Sprintf("only the node agent of the VM's hypervisor may read its user data, and %s is no node agent", u.GetName()))
	case vm.Spec.NodeName == "":
		return forbidden(fmt.Sprintf("VM %s/%s is not bound to a hypervisor: no agent may read its user data yet", vm.Namespace, vm.Name))
	case hypervisor != vm.Spec.NodeName:
		return forbidden(fmt.Sprintf("VM %s/%s is bound to hypervisor %s, not to %q", vm.Namespace, vm.Name, vm.Spec.NodeName, hypervisor))
	}
	return nil
}

// userData finds the VM's user data: inline, or from the Secret its
// cloudInit disk names, in the VM's own namespace.
func (r *UserDataREST) userData(ctx context.Context, vm *vessel.VirtualMachine) ([]byte, error) {
	for i, disk := range vm.Spec.Disks {
		ci := disk.CloudInit
		if ci == nil {
			continue
		}
		ref := ci.UserDataSecretRef
		if ref == nil {
			return []byte(ci.UserData), nil
		}
		path := field.NewPath("spec", "disks").Index(i).Child("cloudInit", "userDataSecretRef")
		if r.guards.SecretData == nil {
			return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("VM %s/%s takes its user data from Secret %s (%s), and this vessel-apiserver has no connection to kube-apiserver to read it", vm.Namespace, vm.Name, ref.Name, path))
		}
		data, err := r.guards.SecretData(ctx, vm.Namespace, ref.Name)
		if apierrors.IsNotFound(err) {
			return nil, notFound(fmt.Sprintf("Secret %s/%s, named by %s of VM %s, does not exist", vm.Namespace, ref.Name, path, vm.Name))
		}
		if err != nil {
			return nil, apierrors.NewInternalError(fmt.Errorf("read Secret %s/%s for the user data of VM %s: %w", vm.Namespace, ref.Name, vm.Name, err))
		}
		value, ok := data[ref.Key]
		if !ok {
			return nil, notFound(fmt.Sprintf("Secret %s/%s, named by %s of VM %s, has no key %q", vm.Namespace, ref.Name, path, vm.Name, ref.Key))
		}
		return value, nil
	}
	return nil, notFound(fmt.Sprintf("VM %s/%s has no cloudInit disk", vm.Namespace, vm.Name))
}

// notFound is a 404 whose message is msg alone: what is missing is not the
// VM the request names.
func notFound(msg string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusNotFound,
		Reason:  metav1.StatusReasonNotFound,
		Message: msg,
	}}
}
