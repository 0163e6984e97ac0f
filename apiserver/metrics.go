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

package apiserver

import (
	"fmt"
	"time"

	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"

	"github.com/vessel-vm/vessel/apis/metrics"
	metricsv1alpha1 "github.com/vessel-vm/vessel/apis/metrics/v1alpha1"
	"github.com/vessel-vm/vessel/controller/usage"
	"github.com/vessel-vm/vessel/generated/clientset/versioned"
	informers "github.com/vessel-vm/vessel/generated/informers/externalversions"
	metricsvm "github.com/vessel-vm/vessel/registry/metrics/virtualmachine"
)

// installMetricsAPI serves metrics.vessel.dev, the VMs' current usage,
// from memory: a post-start hook reads every Ready Hypervisor's agent each
// UsageResolution over the agents' mutual TLS (without AgentTransports the
// API is served but empty). The apiserver pulls rather than agents push,
// so agents need no write permission for it and an agent can only ever
// speak for the VMs bound to it.
func (c CompletedConfig) installMetricsAPI(generic *genericapiserver.GenericAPIServer, vmStorage rest.Storage) error {
	vms, ok := vmStorage.(metricsvm.VMs)
	if !ok {
		return fmt.Errorf("the virtualmachines storage %T cannot be listed", vmStorage)
	}
	store := usage.NewStore()
	group := genericapiserver.NewDefaultAPIGroupInfo(metrics.GroupName, Scheme, ParameterCodec, Codecs)
	group.VersionedResourcesStorageMap[metricsv1alpha1.SchemeGroupVersion.Version] = map[string]rest.Storage{
		"virtualmachines": metricsvm.NewStorage(vms, store),
	}
	if err := generic.InstallAPIGroup(&group); err != nil {
		return fmt.Errorf("install API group %s: %w", metrics.GroupName, err)
	}
	transports := c.ExtraConfig.AgentTransports
	if transports == nil {
		return nil
	}
	resolution := c.ExtraConfig.UsageResolution
	return generic.AddPostStartHook("start-vessel-usage-scraper", func(hook genericapiserver.PostStartHookContext) error {
		client, err := versioned.NewForConfig(hook.LoopbackClientConfig)
		if err != nil {
			return fmt.Errorf("create loopback client: %w", err)
		}
		factory := informers.NewSharedInformerFactory(client, 10*time.Minute)
		scraper := usage.New(factory.Vessel().V1alpha1().Hypervisors().Lister(), transports, store, resolution)
		factory.Start(hook.Done())
		go func() {
			factory.WaitForCacheSync(hook.Done())
			scraper.Run(hook)
		}()
		return nil
	})
}
