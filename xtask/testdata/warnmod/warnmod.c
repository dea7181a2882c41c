// SPDX-License-Identifier: GPL-2.0
/*
 * warnmod: a test module for myinit's kernel-health watch. Writing anything
 * to /proc/warnmod_trigger runs WARN_ON(1) in warnmod_trigger_write, so the
 * kernel log shows a WARNING that names this function.
 */
#include <linux/bug.h>
#include <linux/module.h>
#include <linux/proc_fs.h>

static struct proc_dir_entry *warnmod_entry;

/* noinline: the WARNING's "RIP:" line and backtrace must name it. */
static noinline ssize_t warnmod_trigger_write(struct file *file,
					      const char __user *buf,
					      size_t count, loff_t *pos)
{
	WARN_ON(1);
	return count;
}

static const struct proc_ops warnmod_ops = {
	.proc_write = warnmod_trigger_write,
};

static int __init warnmod_init(void)
{
	warnmod_entry = proc_create("warnmod_trigger", 0200, NULL, &warnmod_ops);
	return warnmod_entry ? 0 : -ENOMEM;
}

static void __exit warnmod_exit(void)
{
	proc_remove(warnmod_entry);
}

module_init(warnmod_init);
module_exit(warnmod_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("WARN_ON(1) on a write to /proc/warnmod_trigger");
