/* notice.h — lines the library wants the user to see that are not failures. */
#ifndef IMGSET_NOTICE_H
#define IMGSET_NOTICE_H

#include "error.h"

/* Say something the user should know that is not a failure (a store moved to another
 * server): one line, handed to the notice handler; by default printed on stderr as
 * "imgset: <line>". Safe from any thread. */
void imgset_notice(const char *fmt, ...) IMGSET_PRINTF(1, 2);

/* Send notices to handler instead (NULL: back to stderr); set it before any thread starts. */
void imgset_set_notice_handler(void (*handler)(const char *line));

#endif
