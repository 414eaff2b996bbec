"""Word lists for demo data: sub-branch, place and merchant names, industries by place type.

Everything here is a constant; the generator combines these with seeded random indices, so the
same seed gives the same names (Faker is used for people's names and street names only)."""

# Hangzhou neighbourhoods, downtown first: sub-branch i gets name i ("西湖支行", "武林支行", ...).
_SUB_BRANCH_WORDS = (
    "西湖 武林 湖滨 黄龙 庆春 凤起 朝晖 钱江新城 滨江 城西 文三路 古荡 翠苑 西溪 蒋村 三墩 "
    "紫金港 石桥 半山 拱宸桥 大关 和睦 小河 康桥 祥符 丁桥 笕桥 彭埠 九堡 四季青 南星 望江 "
    "紫阳 清波 采荷 闸弄口 东新 米市巷 长河 西兴 浦沿 北塘 宁围 新塘 闻堰 下沙 白杨 临平 "
    "乔司 良渚 闲林 五常 仓前 转塘 之江 留下 萧山 城厢 北干 蜀山 瓜沥 义蓬 勾庄 崇贤"
)
SUB_BRANCH_NAMES = tuple(_SUB_BRANCH_WORDS.split())

# (name, centre lon/lat). The first branch holds downtown, so the regional head sees the densest area.
BRANCH_SITES = (
    ("杭州分行", (120.165, 30.275)),
    ("钱塘分行", (120.330, 30.300)),
    ("萧山分行", (120.270, 30.160)),
    ("余杭分行", (120.080, 30.400)),
)

# Downtown and the secondary centres that pull grids, places and merchants towards them.
DOWNTOWN = (120.17, 30.27)
SUB_CENTRES = (
    (120.21, 30.20),  # 滨江
    (120.27, 30.17),  # 萧山
    (120.33, 30.30),  # 下沙
    (120.06, 30.29),  # 未来科技城
    (120.30, 30.41),  # 临平
    (120.09, 30.33),  # 三墩
    (120.13, 30.20),  # 转塘
)

# Syllables for place-name prefixes ("紫金", "华星", ...).
PLACE_SYLLABLES_1 = "文华紫金翠星东新兴龙凤青云松竹梅兰荷桂杨柳石沙溪泉茶锦虹霞明光瑞祥嘉永和平宁康德丰天海江湖山塘港桥"
PLACE_SYLLABLES_2 = "苑源城港湾园岭坞浦林庄河桥塘滨洲阳晖安福泰盛隆昌达华兴丰和宁康乐景翠"

# Per place kind: name suffixes, each with the industries of the merchants clustered there.
PARK_TYPES = (
    ("科技园", {"technology": 6, "culture": 1, "education": 1, "other": 1}),
    ("软件园", {"technology": 7, "culture": 1, "other": 1}),
    ("电商产业园", {"technology": 4, "wholesale_retail": 3, "logistics": 2}),
    ("工业园", {"manufacturing": 7, "logistics": 1, "building_materials": 1, "food": 1}),
    ("产业园", {"manufacturing": 5, "technology": 2, "food": 1, "medical": 1}),
    ("物流园", {"logistics": 7, "cold_chain": 2, "wholesale_retail": 1}),
    ("创业园", {"technology": 4, "culture": 3, "education": 1, "other": 1}),
    ("文创园", {"culture": 6, "education": 2, "catering_lodging": 1}),
)
MARKET_TYPES = (
    ("建材市场", {"building_materials": 5, "decoration": 3, "wholesale_retail": 2}),
    ("家居建材城", {"decoration": 5, "building_materials": 3, "wholesale_retail": 2}),
    ("农副产品批发市场", {"food": 5, "agriculture": 2, "wholesale_retail": 3}),
    ("冷链物流中心", {"cold_chain": 6, "food": 2, "logistics": 2}),
    ("水产批发市场", {"cold_chain": 4, "food": 4, "wholesale_retail": 2}),
    ("服装城", {"wholesale_retail": 7, "manufacturing": 3}),
    ("小商品市场", {"wholesale_retail": 8, "other": 2}),
    ("五金机电市场", {"manufacturing": 5, "wholesale_retail": 5}),
    ("茶叶市场", {"food": 4, "agriculture": 3, "wholesale_retail": 3}),
    ("花鸟市场", {"wholesale_retail": 6, "other": 4}),
)
BUSINESS_DISTRICT_TYPES = (
    (
        "商圈",
        {"catering_lodging": 4, "wholesale_retail": 3, "food": 1, "education": 1, "medical": 1, "culture": 1},
    ),
    ("购物中心", {"wholesale_retail": 5, "catering_lodging": 3, "education": 1, "culture": 1}),
    ("步行街", {"catering_lodging": 4, "wholesale_retail": 4, "food": 2}),
    ("商业街", {"catering_lodging": 3, "wholesale_retail": 3, "medical": 1, "decoration": 1, "food": 1}),
)
COMMUNITY_TYPES = (("社区", {}),)
VILLAGE_TYPES = (("村", {}),)

# Merchants outside the clusters: downtown mix, and the outskirts (more agriculture).
SCATTERED_INDUSTRIES = {
    "catering_lodging": 18,
    "wholesale_retail": 20,
    "food": 10,
    "manufacturing": 8,
    "logistics": 5,
    "medical": 5,
    "education": 6,
    "culture": 5,
    "decoration": 6,
    "building_materials": 3,
    "cold_chain": 1,
    "agriculture": 1,
    "technology": 7,
    "other": 5,
}
OUTSKIRTS_INDUSTRIES = {**SCATTERED_INDUSTRIES, "agriculture": 18, "manufacturing": 14, "logistics": 8}

# Merchant names: brand + trade word + legal form. Trade words per industry.
TRADE_WORDS = {
    "food": ("食品", "粮油", "副食品", "烘焙", "茶叶", "调味品"),
    "catering_lodging": ("餐饮", "餐饮管理", "面馆", "小吃", "酒店", "民宿", "火锅", "茶餐厅"),
    "manufacturing": ("机械", "五金", "电子", "塑料制品", "纺织", "服饰", "包装", "模具"),
    "logistics": ("物流", "货运", "快递服务", "仓储", "供应链"),
    "medical": ("医疗器械", "大药房", "诊所", "口腔门诊", "健康管理"),
    "education": ("教育咨询", "培训", "艺术培训", "托育服务"),
    "culture": ("文化传媒", "广告", "印务", "文创", "影视"),
    "decoration": ("装饰工程", "装饰设计", "家居", "软装"),
    "wholesale_retail": ("商贸", "贸易", "百货", "便利店", "服装", "日用品"),
    "building_materials": ("建材", "陶瓷", "五金建材", "门窗", "石材"),
    "cold_chain": ("冷链物流", "冻品", "水产", "生鲜"),
    "agriculture": ("农业开发", "家庭农场", "农资", "种植专业合作社", "茶叶专业合作社", "养殖"),
    "technology": ("科技", "网络科技", "信息技术", "电子商务", "智能科技", "软件"),
    "other": ("商务咨询", "服务部", "家政服务", "汽车服务"),
}
# Legal forms with the 2-character credit-code prefix that goes with them (GB 32100:
# 91 enterprise, 92 individual business, 93 farmers' cooperative).
COMPANY_FORMS = ("有限公司", "有限公司", "有限公司", "股份有限公司")
SOLE_FORMS = ("商行", "经营部", "店", "工作室", "门市部")
COOP_MARK = "合作社"

ROAD_SUFFIXES = ("路", "路", "路", "街", "大道", "巷")

# Administrative division codes (GB/T 2260) of Hangzhou's districts, for credit codes.
HANGZHOU_DIVISIONS = ("330102", "330105", "330106", "330108", "330109", "330110", "330113", "330114")

# -- People around merchants, activities, funnel (steps after merchants) -----------------------

# 身份证 division codes (GB/T 2260): mostly Hangzhou, then the rest of Zhejiang, then the provinces
# many small-business owners in Hangzhou come from.
ID_DIVISIONS_HANGZHOU = ("330102", "330105", "330106", "330108", "330109", "330110", "330111", "330122")
ID_DIVISIONS_ZHEJIANG = ("330203", "330302", "330402", "330502", "330602", "330702", "330782", "331002")
ID_DIVISIONS_ELSEWHERE = ("340121", "341221", "360121", "362321", "410122", "412726", "420621", "512922", "522121")

# Titles of contacts at a merchant; the family ones also get a PersonRelation to the owner.
CONTACT_TITLES = ("店长", "财务", "出纳", "经理", "采购", "会计", "行政主管")
FAMILY_CONTACTS = (
    ("老板娘", "spouse"),
    ("家属", "spouse"),
    ("老板儿子", "child"),
    ("老板女儿", "child"),
    ("老板兄弟", "sibling"),
)

# Activity texts (indexes into these lists are drawn in Python, the text is joined in SQL).
VISIT_NOTES = (
    "实地走访，门店正常经营，客流一般。",
    "见到老板本人，了解经营及资金需求。",
    "门店装修升级中，近期有备货资金需求。",
    "老板不在店，与店长交流，留下名片。",
    "核实经营场所，租赁合同剩余两年。",
    "介绍经营快贷及聚合支付产品，客户表示考虑。",
    "客户旺季将至，关注备货周转资金。",
    "走访市场商户，顺带了解上下游情况。",
    "客户已在他行有贷款，利率比较敏感。",
    "收集营业执照及近半年流水。",
)
CALL_NOTES = (
    "电话回访，客户暂无资金需求。",
    "电话未接通，稍后再联系。",
    "电话沟通贷款额度及利率，客户有意向。",
    "提醒客户补充申请材料。",
    "告知审批进度，客户确认用款时间。",
    "电话邀请参加商户沙龙。",
    "客户表示近期忙，约下周再谈。",
    "回访聚合支付使用情况，反馈良好。",
)
EVENT_NOTES = (
    "现场讲解普惠金融政策，商户反响积极。",
    "现场办理聚合支付开通。",
    "收集商户融资需求，会后逐户跟进。",
    "与市场管理方联合开展，覆盖主要商户。",
)
NEXT_STEPS = (
    "下周电话回访",
    "收集近半年银行流水",
    "提交授信申请材料",
    "预约实地走访",
    "推荐聚合支付",
    "介绍经营快贷产品",
    "确认用款时间及金额",
    "补充营业执照复印件",
    "邀请参加商户沙龙",
    "跟进审批进度",
    "上门签约",
    "核实经营场所租赁合同",
    "联系上游供应商拓客",
    "办理代发工资业务",
)
# Event type -> titles (the grid's name is prefixed in SQL).
EVENT_TITLES = {
    "salon": ("小微企业融资沙龙", "普惠金融政策宣讲会", "商户经营交流会"),
    "park_event": ("园区企业金融服务日", "园区政银企对接会"),
    "market_event": ("金融服务进市场", "市场商户集中开户日"),
    "channel_event": ("商会联谊会", "行业协会合作推介会"),
}
# Lost-lead notes per LostReason code (crm/migrations/0005_seed_lost_reasons.py).
LOST_NOTES = {
    "no_need": ("客户资金充足，暂不需要", "经营规模小，暂无融资计划"),
    "rate": ("嫌利率偏高", "对比他行后认为利率无优势"),
    "other_bank": ("已在他行获批", "他行额度更高"),
    "not_qualified": ("经营年限不足", "流水不达准入要求"),
    "credit": ("征信有逾期记录", "涉及经营纠纷诉讼"),
    "unreachable": ("多次电话未接通", "门店已搬迁，联系方式失效"),
    "closed": ("商户已停业",),
    "other": ("客户暂缓考虑",),
}
