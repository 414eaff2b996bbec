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
