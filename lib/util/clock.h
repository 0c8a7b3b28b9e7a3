/* clock.h - the monotonic clock every deadline and backoff is measured on. */
#ifndef EXACTLY_CLOCK_H
#define EXACTLY_CLOCK_H

/* Milliseconds on CLOCK_MONOTONIC: differences only, never a date. */
long long exactly_now_ms(void);

/* Sleeps ms milliseconds, carrying on after a signal interrupts it. */
void exactly_sleep_ms(int ms);

#endif
