package org.apache.dubbo.metadata;

import java.io.Serializable;
import java.util.Date;
import java.util.List;
import java.util.Map;

/**
 * "A newer provider": MetadataInfo's three fields plus fields no decoder
 * knows, of every Hessian kind the MetadataInfo graph does not otherwise
 * use (longs, doubles, booleans, dates, binary, lists). Decoders must carry
 * or ignore them without losing the known fields.
 */
public class MetadataInfoV9 implements Serializable {
    private static final long serialVersionUID = 1L;

    public String app;
    public String revision;
    public Map<String, MetadataInfo.ServiceInfo> services;
    public long timestamp;
    public long longMax;
    public long longMin;
    public long safeMax;
    public long beyondSafe;
    public long smallLong;
    public int intMin;
    public int intMax;
    public double tiny;
    public double huge;
    public double negative;
    public double whole;
    public double mills;
    public boolean enabled;
    public Boolean disabled;
    public Long nothing;
    public Date created;
    public Date minute;
    public byte[] blob;
    public List<String> tags;
}
