// The tinyflow application: TFLM set-up, boot self-test, and the serial protocol server.
#ifndef TINYFLOW_APP_H_
#define TINYFLOW_APP_H_

// Returns 0 when the model is ready; otherwise the firmware still answers HELLO and reports the error.
int tf_app_setup(void);
// Serve the host: call in a loop.
void tf_app_poll(void);

#endif  // TINYFLOW_APP_H_
