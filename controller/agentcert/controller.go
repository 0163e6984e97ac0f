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

package agentcert

import (
	"context"
	"fmt"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	certlisters "k8s.io/client-go/listers/certificates/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/vessel-vm/vessel/apiserver/agentidentity"
)

// Controller approves or denies every pending CSR for SignerName, and
// signs the approved ones. Other signers' CSRs are not even watched.
type Controller struct {
	client   kubernetes.Interface
	csrs     certlisters.CertificateSigningRequestLister
	synced   cache.InformerSynced
	queue    workqueue.TypedRateLimitingInterface[string]
	identify agentidentity.Identifier
	signer   *Signer
}

// NewInformerFactory watches only CSRs for SignerName.
func NewInformerFactory(client kubernetes.Interface, resync time.Duration) informers.SharedInformerFactory {
	return informers.NewSharedInformerFactoryWithOptions(client, resync, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.signerName", SignerName).String()
	}))
}

// New wires a controller to factory (from NewInformerFactory); call Run
// after starting it.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, identify agentidentity.Identifier, signer *Signer) (*Controller, error) {
	informer := factory.Certificates().V1().CertificateSigningRequests()
	c := &Controller{
		client:   client,
		csrs:     informer.Lister(),
		synced:   informer.Informer().HasSynced,
		queue:    workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](), workqueue.TypedRateLimitingQueueConfig[string]{Name: "agent-serving-csrs"}),
		identify: identify,
		signer:   signer,
	}
	enqueue := func(obj any) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	_, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	})
	if err != nil {
		return nil, fmt.Errorf("watch certificate signing requests: %w", err)
	}
	return c, nil
}

// Run processes CSRs until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	defer utilruntime.HandleCrashWithContext(ctx)
	defer c.queue.ShutDown()
	if !cache.WaitForNamedCacheSyncWithContext(ctx, c.synced) {
		return
	}
	go wait.UntilWithContext(ctx, c.work, time.Second)
	<-ctx.Done()
}

func (c *Controller) work(ctx context.Context) {
	for {
		key, quit := c.queue.Get()
		if quit {
			return
		}
		err := c.sync(ctx, key)
		if err != nil {
			klog.FromContext(ctx).Error(err, "Processing an agent serving CSR failed; retrying", "csr", key)
			c.queue.AddRateLimited(key)
		} else {
			c.queue.Forget(key)
		}
		c.queue.Done(key)
	}
}

// sync decides a pending CSR, and signs an approved one. The decision is
// taken again before signing, so that a CSR someone else approved is
// signed only if the rules allow it.
func (c *Controller) sync(ctx context.Context, name string) error {
	csr, err := c.csrs.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if csr.Spec.SignerName != SignerName || len(csr.Status.Certificate) > 0 {
		return nil
	}
	approved, denied, failed := conditions(csr)
	if denied || failed {
		return nil
	}
	logger := klog.FromContext(ctx).WithValues("csr", name, "requester", csr.Spec.Username)
	decision := Decide(csr, c.identify)
	if !approved {
		csr = csr.DeepCopy()
		condition := certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue,
			Reason: decision.Reason, Message: decision.Message,
			LastUpdateTime: metav1.Now(),
		}
		if !decision.Approve {
			condition.Type = certificatesv1.CertificateDenied
		}
		csr.Status.Conditions = append(csr.Status.Conditions, condition)
		if _, err := c.client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, name, csr, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("record %s of CSR %s: %w", condition.Type, name, err)
		}
		logger.Info("Decided an agent serving CSR", "decision", condition.Type, "reason", decision.Message)
		// The update comes back through the informer to be signed.
		return nil
	}
	if !decision.Approve {
		return c.fail(ctx, csr, decision.Reason, "approved, but not signed: "+decision.Message)
	}
	cert, err := c.signer.Sign(csr)
	if err != nil {
		return c.fail(ctx, csr, ReasonFailedSigning, err.Error())
	}
	csr = csr.DeepCopy()
	csr.Status.Certificate = cert
	if _, err := c.client.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("store the certificate of CSR %s: %w", name, err)
	}
	logger.Info("Signed an agent serving certificate")
	return nil
}

// fail marks a CSR Failed: it will not be signed.
func (c *Controller) fail(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, reason, message string) error {
	csr = csr.DeepCopy()
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateFailed, Status: corev1.ConditionTrue,
		Reason: reason, Message: message, LastUpdateTime: metav1.Now(),
	})
	if _, err := c.client.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("mark CSR %s failed: %w", csr.Name, err)
	}
	return nil
}

func conditions(csr *certificatesv1.CertificateSigningRequest) (approved, denied, failed bool) {
	for _, c := range csr.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case certificatesv1.CertificateApproved:
			approved = true
		case certificatesv1.CertificateDenied:
			denied = true
		case certificatesv1.CertificateFailed:
			failed = true
		}
	}
	return approved, denied, failed
}
