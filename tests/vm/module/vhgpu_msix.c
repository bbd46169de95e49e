// SPDX-License-Identifier: GPL-2.0
/*
 * vhgpu: MSI-X. VHGPU_MSIX_VECTORS vectors, each on its own eventfd
 * (VFIO_PCI_MSIX_IRQ_INDEX), maskable one by one through
 * VFIO_IRQ_SET_ACTION_MASK / UNMASK: a vector raised while masked is held
 * pending (BAR0 VHGPU_REG_MSIX_PENDING and the PBA) and signalled once when
 * unmasked. The device raises vector N when userspace writes N to BAR0
 * VHGPU_REG_MSIX_RAISE, and vector 0 for its own interrupt causes (the IRQ
 * status bits, as on MSI) while MSI-X is the active mode. A loopback
 * ACTION_TRIGGER goes through the same path (masking holds it back too).
 *
 * The capability sits at VHGPU_MSIX_CAP with its table and PBA in BAR0; the
 * table is plain storage (a VMM emulates it and drives delivery through
 * VFIO, as with vfio-pci), reset to masked entries on device reset.
 *
 * Everything here runs with dev->lock held.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include "vhgpu_priv.h"

/* Appends the MSI-X capability after MSI (config and write mask). */
void vhgpu_msix_init_config(struct vhgpu_dev *dev)
{
	u8 *c = dev->cfg, *m = dev->cfg_wmask;

	c[VHGPU_MSI_CAP + PCI_CAP_LIST_NEXT] = VHGPU_MSIX_CAP;
	c[VHGPU_MSIX_CAP + PCI_CAP_LIST_ID] = PCI_CAP_ID_MSIX;
	c[VHGPU_MSIX_CAP + PCI_CAP_LIST_NEXT] = 0;
	vhgpu_cfg_put16(c, VHGPU_MSIX_CAP + PCI_MSIX_FLAGS, VHGPU_MSIX_VECTORS - 1);
	vhgpu_cfg_put32(c, VHGPU_MSIX_CAP + PCI_MSIX_TABLE, VHGPU_MSIX_TABLE | 0 /* BAR0 */);
	vhgpu_cfg_put32(c, VHGPU_MSIX_CAP + PCI_MSIX_PBA, VHGPU_MSIX_PBA | 0 /* BAR0 */);
	vhgpu_cfg_put16(m, VHGPU_MSIX_CAP + PCI_MSIX_FLAGS,
			PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
}

/* Device reset: nothing pending or masked, table entries masked (PCI reset values). */
void vhgpu_msix_reset(struct vhgpu_dev *dev)
{
	unsigned int i;

	memset(dev->msix_table, 0, sizeof(dev->msix_table));
	for (i = 0; i < VHGPU_MSIX_VECTORS; i++)
		dev->msix_table[i * 4 + 3] = PCI_MSIX_ENTRY_CTRL_MASKBIT;
	dev->msix_masked = 0;
	dev->msix_pending = 0;
	dev->msix_sent = 0;
}

static void vhgpu_msix_signal(struct vhgpu_dev *dev, unsigned int v)
{
	if (!dev->msix_trigger[v])
		return;
	eventfd_signal(dev->msix_trigger[v]);
	dev->msix_sent++;
}

/* Raises vector @vector: signalled now, or held pending while masked. */
void vhgpu_msix_fire(struct vhgpu_dev *dev, unsigned int vector)
{
	if (vector >= VHGPU_MSIX_VECTORS || dev->irq_mode != VHGPU_IRQ_MSIX)
		return;
	if (dev->msix_masked & BIT(vector)) {
		dev->msix_pending |= BIT(vector);
		return;
	}
	vhgpu_msix_signal(dev, vector);
}

void vhgpu_msix_teardown(struct vhgpu_dev *dev)
{
	unsigned int i;

	for (i = 0; i < VHGPU_MSIX_VECTORS; i++) {
		if (dev->msix_trigger[i])
			eventfd_ctx_put(dev->msix_trigger[i]);
		dev->msix_trigger[i] = NULL;
	}
	dev->msix_masked = 0;
	dev->msix_pending = 0;
	if (dev->irq_mode == VHGPU_IRQ_MSIX)
		dev->irq_mode = VHGPU_IRQ_NONE;
}

/* DATA_EVENTFD | ACTION_TRIGGER: fds for vectors start..start+count (-1 = none). */
static int vhgpu_msix_set_eventfds(struct vhgpu_dev *dev, u32 start, u32 count, const s32 *fds)
{
	struct eventfd_ctx *ctx[VHGPU_MSIX_VECTORS] = { NULL };
	unsigned int i;
	bool any = false;

	if (dev->irq_mode != VHGPU_IRQ_NONE && dev->irq_mode != VHGPU_IRQ_MSIX)
		return -EBUSY;	/* one interrupt mode at a time, as vfio-pci */
	/* take every context first: a bad fd changes nothing */
	for (i = 0; i < count; i++) {
		if (fds[i] < 0)
			continue;
		ctx[i] = eventfd_ctx_fdget(fds[i]);
		if (IS_ERR(ctx[i])) {
			int ret = PTR_ERR(ctx[i]);

			ctx[i] = NULL;
			while (i--)
				if (ctx[i])
					eventfd_ctx_put(ctx[i]);
			return ret;
		}
	}
	for (i = 0; i < count; i++) {
		unsigned int v = start + i;

		if (dev->msix_trigger[v])
			eventfd_ctx_put(dev->msix_trigger[v]);
		dev->msix_trigger[v] = ctx[i];
		if (!ctx[i]) {
			dev->msix_masked &= ~BIT(v);
			dev->msix_pending &= ~BIT(v);
		}
	}
	for (i = 0; i < VHGPU_MSIX_VECTORS; i++)
		any |= dev->msix_trigger[i] != NULL;
	dev->irq_mode = any ? VHGPU_IRQ_MSIX : VHGPU_IRQ_NONE;
	return 0;
}

/* VFIO_DEVICE_SET_IRQS on VFIO_PCI_MSIX_IRQ_INDEX, already validated by the core helper. */
int vhgpu_msix_set_irqs(struct vhgpu_dev *dev, struct vfio_irq_set *hdr, u8 *data)
{
	u32 action = hdr->flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
	u32 dtype = hdr->flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
	unsigned int i;

	if (action == VFIO_IRQ_SET_ACTION_TRIGGER && !hdr->count) {
		if (dtype != VFIO_IRQ_SET_DATA_NONE)
			return -EINVAL;
		if (dev->irq_mode == VHGPU_IRQ_MSIX)
			vhgpu_msix_teardown(dev);
		return 0;
	}
	if (action == VFIO_IRQ_SET_ACTION_TRIGGER && dtype == VFIO_IRQ_SET_DATA_EVENTFD)
		return vhgpu_msix_set_eventfds(dev, hdr->start, hdr->count, (const s32 *)data);
	if (dtype == VFIO_IRQ_SET_DATA_EVENTFD || dev->irq_mode != VHGPU_IRQ_MSIX)
		return -EINVAL;

	for (i = 0; i < hdr->count; i++) {
		unsigned int v = hdr->start + i;

		if (dtype == VFIO_IRQ_SET_DATA_BOOL && !data[i])
			continue;
		switch (action) {
		case VFIO_IRQ_SET_ACTION_TRIGGER:	/* loopback, through the mask */
			vhgpu_msix_fire(dev, v);
			break;
		case VFIO_IRQ_SET_ACTION_MASK:
			dev->msix_masked |= BIT(v);
			break;
		case VFIO_IRQ_SET_ACTION_UNMASK:
			dev->msix_masked &= ~BIT(v);
			if (dev->msix_pending & BIT(v)) {
				dev->msix_pending &= ~BIT(v);
				vhgpu_msix_signal(dev, v);
			}
			break;
		default:
			return -EINVAL;
		}
	}
	return 0;
}

/* BAR0 registers and table/PBA of MSI-X; false when @reg is not ours. */
bool vhgpu_msix_reg_read(struct vhgpu_dev *dev, unsigned int reg, u32 *val)
{
	switch (reg) {
	case VHGPU_REG_MSIX_PENDING:
	case VHGPU_MSIX_PBA:
		*val = dev->msix_pending;
		return true;
	case VHGPU_REG_MSIX_SENT:
		*val = dev->msix_sent;
		return true;
	case VHGPU_MSIX_PBA + 4:
		*val = 0;
		return true;
	}
	if (reg >= VHGPU_MSIX_TABLE && reg < VHGPU_MSIX_TABLE + VHGPU_MSIX_VECTORS * 16) {
		*val = dev->msix_table[(reg - VHGPU_MSIX_TABLE) / 4];
		return true;
	}
	return false;
}

bool vhgpu_msix_reg_write(struct vhgpu_dev *dev, unsigned int reg, u32 val)
{
	if (reg == VHGPU_REG_MSIX_RAISE) {
		vhgpu_msix_fire(dev, val);
		return true;
	}
	if (reg >= VHGPU_MSIX_TABLE && reg < VHGPU_MSIX_TABLE + VHGPU_MSIX_VECTORS * 16) {
		unsigned int w = (reg - VHGPU_MSIX_TABLE) / 4;

		if (w % 4 == 3)		/* vector control: only the mask bit */
			val &= PCI_MSIX_ENTRY_CTRL_MASKBIT;
		dev->msix_table[w] = val;
		return true;
	}
	return false;
}
