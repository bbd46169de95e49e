# `info` opens the mbochs device through every IOMMU back end the kernel offers, and the
# reports agree with each other (info-raw compares them with the raw ioctls).
. /etc/vfioh/lib.sh
need MBOCHS
info_across_backends "$MBOCHS" mbochs
