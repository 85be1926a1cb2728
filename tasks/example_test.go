package tasks_test

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/widgetq/widgetq/tasks"
)

// A marketplace backend builds the task when an account connects and
// enqueues it with its own asynq client.
func ExampleNewInstallWidgetTask() {
	task, err := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{
		AccountID:  30123456,
		WidgetCode: "amo_asterisk",
		Settings:   json.RawMessage(`{"login":"example","password":"eXaMp1E","phones":{"504141":"1039"}}`),
	}, asynq.Queue("widgets-high")) // options override the defaults
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(task.Type(), tasks.InstallTaskID(30123456, "amo_asterisk"))
	// client.Enqueue(task) answers asynq.ErrTaskIDConflict while the same
	// install is already queued.

	// Output:
	// widget:install install:30123456:amo_asterisk
}

// Validation errors name the field and match ErrInvalidPayload.
func ExampleFieldError() {
	_, err := tasks.NewInstallWidgetTask(tasks.InstallWidgetPayload{AccountID: 0, WidgetCode: "amo_asterisk"})
	var fe *tasks.FieldError
	fmt.Println(errors.As(err, &fe), fe.Field, errors.Is(err, tasks.ErrInvalidPayload))
	fmt.Println(err)
	// Output:
	// true account_id true
	// account_id: must be a positive integer, got 0
}
