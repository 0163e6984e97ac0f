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
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apiserver/pkg/registry/rest"
)

// Column is one column of `kubectl get` output. Priority 1 columns show only
// with `-o wide`.
type Column struct {
	Name        string
	Type        string
	Priority    int32
	Description string
}

// TableConvertor prints a kind as `kubectl get` rows: NAME first, AGE last,
// and the kind's own columns between them.
type TableConvertor[T Object] struct {
	Columns []Column
	Row     func(obj T) []any
}

var _ rest.TableConvertor = TableConvertor[Object]{}

var objectMetaDescriptions = metav1.ObjectMeta{}.SwaggerDoc()

func (c TableConvertor[T]) ConvertToTable(_ context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{}
	row := func(obj runtime.Object) error {
		o, ok := obj.(T)
		if !ok {
			return fmt.Errorf("cannot print %T as a table", obj)
		}
		cells := append([]any{o.GetName()}, c.Row(o)...)
		cells = append(cells, Age(o.GetCreationTimestamp()))
		table.Rows = append(table.Rows, metav1.TableRow{Cells: cells, Object: runtime.RawExtension{Object: obj}})
		return nil
	}
	var err error
	if meta.IsListType(object) {
		err = meta.EachListItem(object, row)
	} else {
		err = row(object)
	}
	if err != nil {
		return nil, err
	}
	if list, err := meta.ListAccessor(object); err == nil {
		table.ResourceVersion = list.GetResourceVersion()
		table.Continue = list.GetContinue()
		table.RemainingItemCount = list.GetRemainingItemCount()
	} else if obj, err := meta.CommonAccessor(object); err == nil {
		table.ResourceVersion = obj.GetResourceVersion()
	}
	if opts, ok := tableOptions.(*metav1.TableOptions); !ok || !opts.NoHeaders {
		table.ColumnDefinitions = append(table.ColumnDefinitions, metav1.TableColumnDefinition{
			Name: "Name", Type: "string", Format: "name", Description: objectMetaDescriptions["name"],
		})
		for _, col := range c.Columns {
			table.ColumnDefinitions = append(table.ColumnDefinitions, metav1.TableColumnDefinition{
				Name: col.Name, Type: col.Type, Priority: col.Priority, Description: col.Description,
			})
		}
		table.ColumnDefinitions = append(table.ColumnDefinitions, metav1.TableColumnDefinition{
			Name: "Age", Type: "string", Description: objectMetaDescriptions["creationTimestamp"],
		})
	}
	return table, nil
}

// Age prints a timestamp the way kubectl does: "5m", "3d", or "<unknown>".
func Age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t.Time))
}

// Bytes prints a memory or disk size the way people read it: 23.5Gi, 128Mi.
// Quantities keep the unit they were written in (24684096Ki), which a table
// column should not.
func Bytes(q resource.Quantity) string {
	v := float64(q.Value())
	units := []string{"", "Ki", "Mi", "Gi", "Ti", "Pi"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d%s", int64(v), units[i])
	}
	return fmt.Sprintf("%.1f%s", v, units[i])
}

// OrNone prints "<none>" for an empty cell, as kubectl does.
func OrNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
